"""The web app's UI-side helpers (no maths). The engines (`stabledrag.gan` / `.diffusion`) are
reached only through the registry (`stabledrag.engine.get(name)`, the `AppEngine` / `PhotoProjector`
protocols): no module here imports an engine (`tests/test_layering.py` checks it).

Modules, one idea each:
  args          command-line options of `python app.py` (`AppOptions`)
  spaces_compat the ZeroGPU `spaces.GPU` decorator, or a no-op where `spaces` is absent
  models        which models the dropdowns offer (each engine's discovered files only) and the loaded models
  state         per-user session state (`DiffState`, `GanState`) and click bookkeeping
  drawing       numbered handle/target markers, arrows, region overlay, drag animations
  masks         the editable region from a `gr.ImageEditor` value
  session_io    export / import of an editing session (a zip of JSON + PNGs)
  examples      the example images (toy faces, scikit-image photos) listed in assets/examples
  messages      exceptions -> one sentence a person can act on
  runner        run blocking work in a thread and stream its progress reports
  diff_handlers / gan_handlers   the tabs' event handlers as plain, testable functions
  gan_projection(_ui)            the GAN tab's photo upload (the engine's `PhotoProjector`)
  ui            the Gradio Blocks page (`build_demo`)

Only the page modules import gradio (`ui`, `settings_widgets`, `gan_projection_ui`, `safe_editor`,
`fair_queue`); the handlers do not. The programs around the app (screenshots, the hostile-input
check, the examples maker) live in `scripts/`.
"""
