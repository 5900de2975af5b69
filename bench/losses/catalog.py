"""``format_loss_table``: the text that ``bench losses`` prints."""

from __future__ import annotations

from collections.abc import Iterable

from bench.losses._registry import ADDON_WEIGHT, LossInfo, list_addons, list_losses, loss_info


def _value(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) and len(repr(v)) > 10 else repr(v)


def _summary(info: LossInfo) -> str:
    if info.kind == "composite":
        addon, _, base = info.name.partition("+")
        return f"{base} + addon_weight * {addon}"
    doc = (info.cls.__doc__ or "").strip()
    return doc.splitlines()[0].rstrip(".") if doc else ""


def _block(info: LossInfo) -> list[str]:
    shown = {"addon_weight": ADDON_WEIGHT, **info.params} if info.kind == "addon" else info.params
    params = ", ".join(f"{k}={_value(v)}" for k, v in shown.items()) or "(none)"
    head = f"{info.name}" + (f"  -  {_summary(info)}" if _summary(info) else "")
    lines = [
        head,
        f"    params:  {params}",
        f"    labels:  {'yes (-1 = unlabelled)' if info.uses_labels else 'no'}",
        f"    paper:   {info.paper or '-'}",
        f"    ref:     {info.reference or '-'}",
    ]
    if info.terms:
        lines.append(f"    terms:   {', '.join(info.terms)}  (logged as m_loss_<term>)")
    if info.source != "built-in":
        lines.append(f"    plugin:  {info.source}")
    return lines


def format_loss_table(names: Iterable[str] | None = None) -> str:
    """Render every registered loss (plugins included), or only ``names``, as plain text.

    Each entry shows the parameters with their defaults, whether the loss uses labels, its
    paper, its reference implementation and its logged terms; the add-on terms follow with how
    to compose them (``ADDON+BASE``). Composite names such as ``"cloa+infonce"`` are accepted in
    ``names``.

    Raises:
        KeyError: an unknown name (close matches listed).
    """
    selected = list(names) if names is not None else None
    infos = [loss_info(n) for n in (selected if selected is not None else list_losses())]
    addons = [] if selected is not None else [loss_info(a) for a in list_addons()]
    out = [
        f"Losses ({len(infos)}): forward(z1, z2, labels) with z1, z2 (B, d) and labels (B,)",
        "int64, -1 = unlabelled. Parameters are set per loss in a sweep's loss_params.",
        "",
    ]
    for info in infos:
        out += [*_block(info), ""]
    if addons:
        out += [
            f"Add-on terms ({len(addons)}): compose with any base loss as ADDON+BASE, e.g.",
            f"'{addons[0].name}+infonce' = infonce + addon_weight * {addons[0].name}. They use "
            "only labelled samples,",
            "with fixed random orthonormal class targets drawn from the trial seed (needs",
            "num_classes <= embedding dim). Composite parameters = base's + addon_weight=1.0",
            "+ the add-on's own (reduction: batch = sum over labelled / 2B, labelled = mean).",
            "",
        ]
        for info in addons:
            out += [*_block(info), ""]
    return "\n".join(out).rstrip() + "\n"
