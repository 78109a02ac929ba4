"""The web app's UI-side helpers (no maths; the engines live in `stabledrag.gan` / `.diffusion`).

Modules, one idea each:
  args          command-line options of `python app.py` (`AppOptions`)
  spaces_compat the ZeroGPU `spaces.GPU` decorator, or a no-op where `spaces` is absent
  models        which models the dropdowns offer (discovered files only) and the loaded engines
  state         per-user session state (`DiffState`, `GanState`) and click bookkeeping
  drawing       numbered handle/target markers, arrows, region overlay, drag animations
  masks         the editable region from a `gr.ImageEditor` value
  session_io    export / import of an editing session (a zip of JSON + PNGs)
  examples      the example images (toy faces, scikit-image photos) and their making
  messages      exceptions -> one sentence a person can act on
  runner        run blocking work in a thread and stream its progress reports
  diff_handlers / gan_handlers   the tabs' event handlers as plain, testable functions
  ui            the Gradio Blocks page (`build_demo`)

Only `ui` imports gradio (the screenshot scripts live in `scripts/`).
"""
