"""The README's method table is generated from the registry (vizlab.docs_gen) and kept in sync."""

from __future__ import annotations

import shutil

from vizlab import docs_gen
from vizlab.methods import REGISTRY
from vizlab.methods.base import AttributionMethod


def test_readme_method_table_is_up_to_date():
    assert docs_gen.main(["--check"]) == 0, "run `python -m vizlab.docs_gen` to regenerate the README's method table"


def test_every_registered_method_has_a_row(monkeypatch, tmp_path):
    class Occlusion(AttributionMethod):
        """Occlusion (Zeiler & Fergus 2014): the drop in y_t when a patch is greyed out.

        Defaults: 16-px patches, stride 8."""

        name = "occlusion"
        input_dims = 4

        def __init__(self, model, patch: int = 16, stride: int = 8) -> None:
            super().__init__(model)

    monkeypatch.setitem(REGISTRY, "occlusion", Occlusion)
    table = docs_gen.method_table()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {f"`{n}`" for n in REGISTRY}
    assert rows["`occlusion`"] == ("| `occlusion` | Occlusion (Zeiler & Fergus 2014): the drop in y_t when a patch is "
                                   "greyed out. | images | Defaults: 16-px patches, stride 8. |")
    assert "\\|g\\|" in rows["`gradients`"]  # pipes in a cell are escaped
    readme = tmp_path / "README.md"
    shutil.copy(docs_gen.README, readme)
    assert docs_gen.main(["--check", "--readme", str(readme)]) == 1  # the new method is missing
    assert docs_gen.main(["--readme", str(readme)]) == 0
    assert docs_gen.main(["--check", "--readme", str(readme)]) == 0
    assert rows["`occlusion`"] in readme.read_text()
