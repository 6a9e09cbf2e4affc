"""A benchmark configuration: one (checkpoint, resolved recipe) pair, one column of the tables; and how the
configurations of successive sessions of one folder are merged."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from groundkit.evaluation.protocols import get_protocol

__all__ = ["Config", "configs_with_rows", "merge_configs"]


@dataclass
class Config:
    label: str  # how tables and compare name it: the checkpoint name (+ "@digest" when ambiguous)
    checkpoint: str  # registry entry name (folder name for a folder)
    path: str
    adapter: str
    recipe: dict[str, Any]
    recipe_digest: str
    protocol: str
    metrics: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "checkpoint": self.checkpoint, "path": self.path, "adapter": self.adapter,
                "recipe": self.recipe, "recipe_digest": self.recipe_digest, "protocol": self.protocol,
                "metrics": list(self.metrics)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        return cls(label=d["label"], checkpoint=d["checkpoint"], path=d.get("path", ""), adapter=d.get("adapter", ""),
                   recipe=dict(d.get("recipe") or {}), recipe_digest=d["recipe_digest"], protocol=d["protocol"],
                   metrics=tuple(d["metrics"]))

    @property
    def main_metric(self) -> str:
        """The metric the config is judged by first (gallery picks, risk-coverage curves, rankings at equal
        coverage): its protocol's main metric when the config computed it (a registered protocol says which)."""
        metric = get_protocol(self.protocol).main_metric
        return metric if metric in self.metrics else self.metrics[0]

    def owns(self, row: Mapping[str, Any]) -> bool:
        return row.get("checkpoint") == self.checkpoint and row.get("recipe_digest") == self.recipe_digest


def configs_with_rows(old: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A configuration of an earlier session that never produced a row (e.g. a run that stopped on a bad
    recipe) is forgotten: it must not linger in the tables as "no successful rows yet"."""
    have = {(r.get("checkpoint"), r.get("recipe_digest")) for r in rows}
    return [c for c in old if (c.get("checkpoint"), c.get("recipe_digest")) in have]


def merge_configs(old: Sequence[Mapping[str, Any]], new: Sequence[Config]) -> list[Config]:
    """Union of the configs of every session of a folder (first seen first), labels made unique."""
    out: list[Config] = []
    for c in [Config.from_dict(d) for d in old] + list(new):
        if not any(o.checkpoint == c.checkpoint and o.recipe_digest == c.recipe_digest for o in out):
            out.append(c)
    names = [c.checkpoint for c in out]
    named = [f"{c.checkpoint}/{c.recipe.get('name', '?')}" for c in out]
    for c, full in zip(out, named):
        # the checkpoint alone while it is unique; else checkpoint/recipe name; the digest only when both repeat
        c.label = c.checkpoint if names.count(c.checkpoint) == 1 else (full if named.count(full) == 1 else f"{full}@{c.recipe_digest}")
    return out
