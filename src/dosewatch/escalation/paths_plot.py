"""The dose-transition pathway tree as a picture (SVG or PNG, drawn by matplotlib): the data so far
on the left, one column per step to the right (the pending patients' resolution, then each
cohort), each node the dose the design recommends next, coloured by its decision, each edge
labelled with the outcome that leads to it (N no DLT, T DLT)."""
from __future__ import annotations

import io
from pathlib import Path

from .paths import DosePaths, PathNode

COLOURS = {"escalate": "#2e7d32", "stay": "#1f5fa8", "de-escalate": "#e07b00", "stop": "#c62828",
           "suspend": "#6a1b9a"}


def _layout(paths: DosePaths) -> dict[int, tuple[float, float]]:
    """x = depth, y = leaf order (a parent in the middle of its children)."""
    pos: dict[int, tuple[float, float]] = {}
    next_leaf = [0.0]

    def place(node: PathNode) -> float:
        if not node.children:
            y = next_leaf[0]
            next_leaf[0] += 1
        else:
            ys = [place(paths.nodes[k]) for k in node.children]
            y = (ys[0] + ys[-1]) / 2
        pos[node.node_id] = (float(node.depth), y)
        return y

    place(paths.root)
    return pos


def _label(node: PathNode) -> str:
    rec = node.rec
    if rec.decision == "stop":
        return "stop" + (f" (MTD {rec.mtd})" if rec.mtd else "")
    if rec.decision == "suspend":
        return f"wait ({rec.next_dose})"
    return str(rec.next_dose)


def draw(paths: DosePaths, title: str | None = None):
    """A matplotlib Figure of the tree."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = _layout(paths)
    leaves = max(1, len(paths.leaves()))
    depth = max(n.depth for n in paths.nodes)
    fig, ax = plt.subplots(figsize=(2.0 + 1.9 * depth, max(2.2, 0.26 * leaves + 1.0)))
    for node in paths.nodes:
        x, y = pos[node.node_id]
        for k in node.children:
            child = paths.nodes[k]
            cx, cy = pos[k]
            ax.plot([x + 0.12, cx - 0.12], [y, cy], color="#9e9e9e", lw=0.7, zorder=1)
            edge = f"P:{child.outcomes}" if child.kind == "pending" else child.outcomes
            ax.text(cx - 0.16, cy, edge, ha="right", va="center", fontsize=6.5, family="monospace", color="#424242")
        colour = COLOURS.get(node.rec.decision, "#424242")
        ax.text(x, y, _label(node), ha="center", va="center", fontsize=7.5, color="white", zorder=3,
                bbox=dict(boxstyle="round,pad=0.25", fc=colour, ec="none"))
    headers = ["now"]
    if paths.pending:
        headers.append(f"{len(paths.pending)} pending\nresolved")
    headers += [f"cohort {i + 1}\n({s} pts)" for i, s in enumerate(paths.cohort_sizes)]
    for i, h in enumerate(headers[:depth + 1]):
        ax.text(i, -1.0, h, ha="center", va="bottom", fontsize=7.5, color="#212121")
    ax.set_xlim(-0.6, depth + 0.5)
    ax.set_ylim(leaves, -1.6)
    ax.axis("off")
    handles = [plt.Line2D([], [], marker="s", ls="", color=c, label=d) for d, c in COLOURS.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=6.5, frameon=False, ncol=5,
              bbox_to_anchor=(0.0, -0.06 if leaves > 10 else -0.15))
    if title:
        ax.set_title(title, fontsize=9, pad=22)
    fig.tight_layout()
    return fig


def svg(paths: DosePaths, title: str | None = None) -> str:
    """The tree as inline SVG text (no external fonts or scripts)."""
    import matplotlib.pyplot as plt

    fig = draw(paths, title)
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def png_img(paths: DosePaths, title: str | None = None) -> str:
    """The tree as an <img> with a PNG data URI (for printed documents)."""
    from ..review.charts import image

    return image(draw(paths, title), title or "dose-transition pathways")


def write(paths: DosePaths, path: str | Path, title: str | None = None) -> Path:
    """Write the tree to ``path``; the suffix picks the format (.svg, .png or .pdf)."""
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() not in (".svg", ".png", ".pdf"):
        raise ValueError(f"{path.name}: the picture is written as .svg, .png or .pdf")
    fig = draw(paths, title)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
