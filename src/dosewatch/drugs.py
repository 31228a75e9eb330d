"""The drug catalog (data/drugs.yaml): recognise a drug by RxNorm code or by name."""
from __future__ import annotations

from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict

from .yaml_load import safe_load


class Drug(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    rxnorm: tuple[str, ...] = ()
    role: str = "other"
    synonyms: tuple[str, ...] = ()


class DrugCatalog:
    def __init__(self, drugs: list[Drug]):
        self.drugs = {d.name: d for d in drugs}
        self.by_rxnorm = {c: d for d in drugs for c in d.rxnorm}
        self.by_text = {s.lower(): d for d in drugs for s in (d.name, *d.synonyms)}

    def find(self, code: str | None = None, text: str | None = None) -> Drug | None:
        """The drug with this RxNorm code, else the one whose name or synonym is the text (or starts it:
        'Lenalidomide 25 mg capsule' -> lenalidomide)."""
        if code and code in self.by_rxnorm:
            return self.by_rxnorm[code]
        if text:
            words = " ".join(text.lower().split())
            if words in self.by_text:
                return self.by_text[words]
            for name in sorted(self.by_text, key=len, reverse=True):
                if words.startswith(name + " "):
                    return self.by_text[name]
        return None


@cache
def drug_catalog() -> DrugCatalog:
    raw = safe_load(resources.files("dosewatch").joinpath("data/drugs.yaml").read_text())
    return DrugCatalog([Drug(**row) for row in raw["drugs"]])
