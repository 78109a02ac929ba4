"""Moving a point marker by dragging it with the mouse.

Gradio's Image sends only clicks (`select`), so a small page script (`MARKER_DRAG_JS`, run once
when the page loads) watches the mouse on each tab's point canvas (`#<prefix>_canvas`). A press
and release less than `DRAG_THRESHOLD_PX` CSS pixels apart stays an ordinary click (Gradio's
`select`: add a point, select-then-place). A longer movement is a drag: while the button is held a
yellow ring follows the pointer (the live hint), and on release the script swallows the click the
browser would send and presses the tab's hidden button `#<prefix>_marker_drag_button` with
`"c0,r0:c1,r1"`: the press and release positions in pixels of the canvas *as shown* (the PNG's
own pixels, zoom included), computed exactly as Gradio computes a `select` index (the image is
fitted into its box, centred, never enlarged). The Python handler (`views.drag_marker`) maps both
through the zoom `Window` like a click, so the script knows nothing of zoom or image size.

Without the script (blocked, or an old page) pressing and releasing is still a click, so points
can still be placed and moved by select-then-place.
"""

from __future__ import annotations

#: Pointer movement (CSS px) that makes a press on the canvas a drag rather than a click.
DRAG_THRESHOLD_PX = 4
#: The tabs whose point canvases accept marker drags (element id prefixes).
PREFIXES = ("diff", "gan")


def drag_box_id(prefix: str) -> str:
    """Element id of the tab's hidden textbox that carries a drag to Python."""
    return f"{prefix}_marker_drag"


def drag_button_id(prefix: str) -> str:
    """Element id of the tab's hidden button the script presses after a drag."""
    return f"{prefix}_marker_drag_button"


def button_js(prefix: str) -> str:
    """JavaScript for the `js=` of the hidden button's click, `(state, text) -> [state, drag]`: the
    drag the page script stored for that tab replaces the textbox's value (Gradio takes a State
    input from the server's session, whatever the page sends for it)."""
    return f"(s, t) => [s, (window.sdMarkerDrag && window.sdMarkerDrag.pending['{prefix}']) || t]"


MARKER_DRAG_JS = """
() => {
  if (window.sdMarkerDrag) return [];
  const THRESHOLD = %(threshold)d;
  const PREFIXES = %(prefixes)s;
  const state = { pending: {}, drag: null, swallow: false, hint: null };
  window.sdMarkerDrag = state;
  const canvasRoot = (el) => {
    for (const p of PREFIXES) {
      const root = document.getElementById(p + '_canvas');
      if (root && el && root.contains(el)) return [p, root];
    }
    return [null, null];
  };
  // the canvas pixel under the pointer, as Gradio computes an Image select index
  const canvasPos = (img, e) => {
    const b = img.getBoundingClientRect();
    const r = Math.min(b.width / img.naturalWidth, b.height / img.naturalHeight, 1);
    const ox = (b.width - img.naturalWidth * r) / 2, oy = (b.height - img.naturalHeight * r) / 2;
    return [Math.round((e.clientX - b.left - ox) / r), Math.round((e.clientY - b.top - oy) / r), r];
  };
  const showHint = (e, img) => {
    if (!state.hint) {
      const h = document.createElement('div');
      h.id = 'sd_marker_drag_hint';
      const r = Math.max(6, Math.min(14, Math.round(Math.min(img.naturalWidth, img.naturalHeight) / 45))) *
                Math.min(1, img.getBoundingClientRect().width / img.naturalWidth) + 4;
      Object.assign(h.style, { position: 'fixed', width: 2 * r + 'px', height: 2 * r + 'px', borderRadius: '50%%',
        border: '3px solid rgb(255, 210, 0)', boxShadow: '0 0 0 1px rgba(0,0,0,0.6)', pointerEvents: 'none',
        zIndex: 10000, transform: 'translate(-50%%, -50%%)' });
      document.body.appendChild(h);
      state.hint = h;
      document.body.style.cursor = 'grabbing';
    }
    state.hint.style.left = e.clientX + 'px';
    state.hint.style.top = e.clientY + 'px';
  };
  const hideHint = () => {
    if (state.hint) { state.hint.remove(); state.hint = null; document.body.style.cursor = ''; }
  };
  document.addEventListener('mousedown', (e) => {
    state.swallow = false;
    if (e.button !== 0) return;
    const [prefix, root] = canvasRoot(e.target);
    const img = e.target && e.target.tagName === 'IMG' ? e.target : null;
    if (!prefix || !img || !img.naturalWidth) return;
    e.preventDefault();  // no native image drag; the click still follows
    state.drag = { prefix, img, x: e.clientX, y: e.clientY, start: canvasPos(img, e), moved: false };
  }, true);
  window.addEventListener('mousemove', (e) => {
    const d = state.drag;
    if (!d) return;
    if (!d.moved && Math.hypot(e.clientX - d.x, e.clientY - d.y) >= THRESHOLD) d.moved = true;
    if (d.moved) showHint(e, d.img);
  }, true);
  window.addEventListener('mouseup', (e) => {
    const d = state.drag;
    state.drag = null;
    hideHint();
    if (!d || !d.moved || e.button !== 0) return;
    state.swallow = true;  // the click the browser sends next belongs to this drag
    const end = canvasPos(d.img, e);
    state.pending[d.prefix] = d.start[0] + ',' + d.start[1] + ':' + end[0] + ',' + end[1];
    const box = document.getElementById(d.prefix + '%(button_suffix)s');
    const button = box && (box.tagName === 'BUTTON' ? box : box.querySelector('button'));
    if (button) button.click();
  }, true);
  window.addEventListener('click', (e) => {
    if (!state.swallow || !canvasRoot(e.target)[0]) return;  // (the hidden button's own click passes)
    state.swallow = false;
    e.stopPropagation();
    e.preventDefault();
  }, true);
  return [];
}
""" % {"threshold": DRAG_THRESHOLD_PX, "prefixes": "[" + ", ".join(f"'{p}'" for p in PREFIXES) + "]",
       "button_suffix": drag_button_id("")}
