"""Scripts that are not library code (run from the repository root with `python -m scripts.NAME`):
`screenshots` / `screenshots_photo` (the README's app screenshots, headless Chromium),
`toy_faces` (a grid of toy-faces dataset images)."""
