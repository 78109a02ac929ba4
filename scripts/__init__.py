"""Scripts that are not library code (run from the repository root with `python -m scripts.NAME`):
`train_gan` / `train_sd` (the training programs behind the bundled toy models in assets/models),
`screenshots` / `screenshots_photo` (the README's app screenshots, headless Chromium),
`toy_faces` (a grid of toy-faces dataset images), `make_examples` (the web app's example images in
assets/examples), `hostile_check` (hostile input sent to a running app, issue 13). Scripts import
the library; the library never imports them."""
