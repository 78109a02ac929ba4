"""`python -m scripts.make_examples` remakes the bundled example images: what it writes is what
`stabledrag.webapp.examples` reads back, and the same pixels, index and licences as assets/examples."""

import json

import numpy as np
from PIL import Image

from scripts.make_examples import main
from stabledrag.paths import EXAMPLES_DIR
from stabledrag.webapp.examples import INDEX_NAME, list_examples


def test_the_examples_maker_remakes_the_bundled_examples(tmp_path, capsys):
    assert main(["--out", str(tmp_path)]) == 0
    made = list_examples(tmp_path)
    assert capsys.readouterr().out.split() == [str(e.path) for e in made]
    assert [e.kind for e in made] == ["toy", "toy", "toy", "photo", "photo"]
    assert [(e.name, e.prompt, e.kind, e.path.name) for e in made] == \
        [(e.name, e.prompt, e.kind, e.path.name) for e in list_examples(EXAMPLES_DIR)]
    assert json.loads((tmp_path / INDEX_NAME).read_text()) == json.loads((EXAMPLES_DIR / INDEX_NAME).read_text())
    assert (tmp_path / "LICENSES.md").read_text() == (EXAMPLES_DIR / "LICENSES.md").read_text()
    for e in made:
        new, bundled = (np.asarray(Image.open(p), dtype=np.int16) for p in (e.path, EXAMPLES_DIR / e.path.name))
        assert new.shape == bundled.shape
        if e.kind == "toy":  # PNG: the renderer's exact pixels
            assert np.array_equal(new, bundled), e.name
        else:  # JPEG: another libjpeg may round a little differently
            assert np.abs(new - bundled).mean() < 1.0, e.name
