"""What the model families add to the config, read from the estimators' registry
(estimators.OPTIONS and MODELS): their own keys in [model] and [decode], which
model takes which of them, the defaults that depend on the model, and each
family's rules across its keys. Nothing here names a family or a model."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from typing import Any

from ..estimators import DEFAULT_MODEL, MODELS, OPTIONS, PATH_MODEL, ModelOption
from ..text import show
from .rules import RULE, Rule

#: Keys only some models take, and why another model refuses them (declared by the
#: model families, estimators.OPTIONS; ModelSpec.options says which model takes which).
FAMILY_KEYS: dict[str, str] = {key: option.refused for key, option in OPTIONS.items()}
#: Keys whose default depends on the model (ModelSpec.defaults); None in the dataclass.
MODEL_DEFAULT_KEYS: tuple[str, ...] = ("decode.max_poses", "decode.min_pose_score")


def _option_field(option: ModelOption) -> Any:
    rule = Rule(choices=option.choices, ge=option.ge, gt=option.gt, le=option.le, toml=option.toml,
                parse=option.parse, auto=option.auto)
    return field(default=option.default, metadata={RULE: rule})


def with_family_keys(keys: type, name: str, table: str, *, after: str, doc: str, module: str) -> type:
    """The dataclass `name` (of `module`) for [table]: the fields of `keys`, with the
    families' own keys for this table (the ModelOptions with a type) after `after`."""
    family = [(key.partition(".")[2], option.type, _option_field(option))
              for key, option in OPTIONS.items() if option.type is not None and key.startswith(table + ".")]
    hints = typing.get_type_hints(keys)
    fields: list[tuple[str, Any, Any]] = []
    for f in dataclasses.fields(keys):
        fields.append((f.name, hints[f.name], field(default=f.default, metadata=f.metadata)))
        if f.name == after:
            fields.extend(family)
    cls = dataclasses.make_dataclass(name, fields, frozen=True, slots=True, namespace={"__doc__": doc})
    cls.__module__ = module  # where pickle finds it
    return cls


def accept_model_name_in_path(raw: dict[str, Any]) -> None:
    """Before model.name existed, model.path held the model's name: still read it so; a
    file given without a name is PATH_MODEL's, as it always was."""
    model = raw.get("model")
    if not isinstance(model, dict) or "name" in model or not isinstance(model.get("path"), str):
        return
    if model["path"] in MODELS:
        model["name"] = model.pop("path")
    elif model["path"]:
        model["name"] = PATH_MODEL


def written_keys(raw: dict[str, Any], sections: tuple[str, ...]) -> set[str]:
    """The dotted keys the file (or a CLI override) actually sets in `sections`,
    before any default fills the rest in."""
    keys: set[str] = set()
    for section in sections:
        table = raw.get(section)
        if isinstance(table, dict):
            keys.update(f"{section}.{name}" for name in table if isinstance(name, str))
    return keys


def check_model_options(model: Any, decode: Any, written: set[str], bad: set[str], problems: list[str]) -> Any:
    """Refuse a key written for a model that does not take it (naming model.name), then
    fill in the model's own defaults for the [decode] keys not written: the [decode]
    section so completed."""
    name_ok = "model.name" not in bad
    spec = MODELS[model.name if name_ok else DEFAULT_MODEL]
    if name_ok:
        for key in sorted(written & FAMILY_KEYS.keys() - spec.options):
            problems.append(f"{key}: {FAMILY_KEYS[key]}; model.name is {show(spec.name)}")
            bad.add(key)
        limit = spec.max_poses_limit
        if (limit is not None and "decode.max_poses" in written - bad
                and decode.max_poses is not None and decode.max_poses > limit):
            problems.append(f"decode.max_poses: {spec.name} finds at most {limit} people, "
                            f"got {decode.max_poses}")
            bad.add("decode.max_poses")
    defaults = dict(spec.defaults)
    for key in MODEL_DEFAULT_KEYS:
        name = key.partition(".")[2]
        if getattr(decode, name) is None or key in bad:
            decode = dataclasses.replace(decode, **{name: defaults[key]})
    return decode


def check_family(model: Any, decode: Any, bad: set[str], problems: list[str]) -> None:
    """The rules across keys that the model's family states (ModelSpec.check)."""
    spec = MODELS[model.name] if "model.name" not in bad else None
    if spec is not None and spec.check is not None:
        problems.extend(spec.check(model, decode, frozenset(bad)))
