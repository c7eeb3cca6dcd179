"""A report table (cells of mean ± std over seeds, or text) and its Markdown, LaTeX and CSV renderings."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

DASH = "–"  # an empty cell: nothing to show (say why in the table's notes)
WIDE_TABLE = 5  # LaTeX tables with more columns are set smaller to fit an article's text width


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (ddof 1; NaN for one value) of `n` values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat | None:
        """The statistics of the finite values, or None when there are none."""
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not finite:
            return None
        mean = math.fsum(finite) / len(finite)
        if len(finite) < 2:
            return cls(mean, math.nan, 1)
        variance = math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)
        return cls(mean, math.sqrt(variance), len(finite))


Cell = Stat | str | None  # None renders as DASH


def fixed(digits: int) -> Callable[[float], str]:
    """A formatter with `digits` decimals."""
    return lambda value: f"{value:.{digits}f}"


def significant(value: float) -> str:
    """Three significant digits with an SI suffix (k, M, G) for large counts."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


@dataclass(frozen=True)
class Column:
    """One column: its header, the direction that is best (bold), how numbers print."""

    name: str
    better: Literal["higher", "lower"] | None = None
    number: Callable[[float], str] = fixed(4)
    wrap: bool = False  # long text (LaTeX: a paragraph column)


@dataclass(frozen=True)
class Table:
    """A report table: rows of cells under `columns`, with an `n` column when `show_n`."""

    key: str  # file stem
    title: str
    description: str  # the paragraph report.md prints above it
    row_header: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[str, tuple[Cell, ...]], ...]
    notes: tuple[str, ...] = field(default=())
    show_n: bool = True

    def best(self, index: int) -> str | None:
        """The displayed mean that is best in column `index` (None when the column has no best)."""
        column = self.columns[index]
        means = [cell.mean for _, cells in self.rows if isinstance(cell := cells[index], Stat)]
        if column.better is None or not means:
            return None
        return column.number(max(means) if column.better == "higher" else min(means))

    def row_n(self, cells: Sequence[Cell]) -> int | None:
        """The largest n among a row's statistics."""
        counts = [cell.n for cell in cells if isinstance(cell, Stat)]
        return max(counts) if counts else None


def cell_text(cell: Cell, column: Column, row_n: int | None, pm: str = "±") -> str:
    """A cell as text: `mean ± std` (just the mean for n = 1), `(n=k)` where k differs from the row's n."""
    if cell is None:
        return DASH
    if isinstance(cell, str):
        return cell
    text = column.number(cell.mean) if cell.n < 2 else f"{column.number(cell.mean)} {pm} {column.number(cell.std)}"
    return text if cell.n == row_n else f"{text} (n={cell.n})"


def _is_best(table: Table, index: int, cell: Cell) -> bool:
    best = table.best(index)
    return best is not None and isinstance(cell, Stat) and table.columns[index].number(cell.mean) == best


def _header(table: Table) -> list[str]:
    return [table.row_header, *(["n"] if table.show_n else []), *(c.name for c in table.columns)]


def _body(
    table: Table, escape: Callable[[str], str], bold: Callable[[str], str], missing_n: str
) -> Iterator[list[str]]:
    """Each row's texts in one output format: label, n where shown, then the cells, each
    escaped and the column's best in `bold`."""
    for label, cells in table.rows:
        row_n = table.row_n(cells)
        texts = []
        for index, (cell, column) in enumerate(zip(cells, table.columns, strict=True)):
            text = escape(cell_text(cell, column, row_n))
            texts.append(bold(text) if _is_best(table, index, cell) else text)
        n_cell = [str(row_n) if row_n is not None else missing_n] if table.show_n else []
        yield [escape(label), *n_cell, *texts]


def to_markdown(table: Table) -> str:
    """A GitHub pipe table, best value per column in bold, notes below."""

    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    header = _header(table)
    lines = [
        "| " + " | ".join(escape(h) for h in header) + " |",
        "|"
        + "|".join([":--", *(["--:"] if table.show_n else []), *(":--" if c.wrap else "--:" for c in table.columns)])
        + "|",
    ]
    for row in _body(table, escape, lambda text: f"**{text}**", DASH):
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *(f"{note}" for note in table.notes)] if table.notes else []
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "–": "--",
    "µ": r"$\mu$",
    "≥": r"$\geq$",
    "†": r"\textdagger{}",
    "≤": r"$\leq$",
    "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped and the few non-ASCII symbols we print mapped."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    """A booktabs `table` float with caption and label, best value per column in bold. A wide table
    (more than WIDE_TABLE columns, or wider than an article's text by the estimate) is set smaller,
    and where it would still be wider than the text it is split into blocks of columns, one tabular
    under the other, each repeating the row labels (`latex_blocks`)."""
    wide = _is_wide(table)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        *([r"\footnotesize", r"\setlength{\tabcolsep}{3pt}"] if wide else []),
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\label{{tab:{table.key}}}",
    ]
    lead = 1 + table.show_n  # the label and n, before the cells
    header = [latex_escape(h) for h in _header(table)]
    body = list(_body(table, latex_escape, lambda text: rf"\textbf{{{text}}}", "--"))
    blocks = latex_blocks(table) if wide else [list(range(len(table.columns)))]
    for number, block in enumerate(blocks):
        spec = "l" + ("r" if table.show_n else "") + "".join("p{3cm}" if table.columns[i].wrap else "r" for i in block)
        keep = [*range(lead), *(lead + i for i in block)]
        lines += [
            *([r"\par\medskip"] if number else []),
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
            " & ".join(header[i] for i in keep) + r" \\",
            r"\midrule",
            *(" & ".join(row[i] for i in keep) + r" \\" for row in body),
            r"\bottomrule",
            r"\end{tabular}",
        ]
    if table.notes:
        lines += [r"\par\smallskip", r"\footnotesize " + latex_escape(" ".join(table.notes))]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


TEXT_WIDTH = 345.0  # pt: the text width of a plain `article` (10pt), which a table's blocks fit
NORMAL = (5.0, 12.0)  # pt: a character of normal-size text, generously (digits are 5), and a column's padding
SMALL = (4.2, 6.0)  # the same in a wide table: \footnotesize (digits are 4), \tabcolsep 3pt
PARAGRAPH_WIDTH = 85.4  # pt: a wrapped column, p{3cm}
BOLD_WIDTH = 1.12  # bold text is this much wider
BOLD_MARK = "\0"  # marks a bold cell's text for the estimate


def _latex_widths(table: Table, size: tuple[float, float]) -> tuple[float, list[float]]:
    """The estimated printed widths (pt) of the row labels with n, and of each column, at `size`."""
    char, padding = size
    plain = list(_body(table, lambda text: text, lambda text: BOLD_MARK + text, DASH))
    header = _header(table)

    def printed(text: str) -> float:
        return len(text.removeprefix(BOLD_MARK)) * char * (BOLD_WIDTH if text.startswith(BOLD_MARK) else 1.0)

    def width(index: int) -> float:  # of the row's index-th printed column
        return max(printed(text) for text in [header[index], *(row[index] for row in plain)]) + padding

    lead = 1 + table.show_n
    columns = [PARAGRAPH_WIDTH + padding if c.wrap else width(lead + i) for i, c in enumerate(table.columns)]
    return sum(width(i) for i in range(lead)), columns


def _is_wide(table: Table) -> bool:
    """More than WIDE_TABLE columns, or wider than the text at normal size (by the estimate)."""
    lead, columns = _latex_widths(table, NORMAL)
    return len(table.columns) > WIDE_TABLE or lead + sum(columns) > TEXT_WIDTH


def latex_blocks(table: Table) -> list[list[int]]:
    """The column indices of each block a wide table's LaTeX is split into: in order, as many columns
    to a block as fit TEXT_WIDTH beside the row labels (and n) at the wide table's size, by the
    printed text's estimated width (one block where the whole table fits; at least one column each)."""
    lead, columns = _latex_widths(table, SMALL)
    blocks: list[list[int]] = [[]]
    used = lead
    for index, needed in enumerate(columns):
        if blocks[-1] and used + needed > TEXT_WIDTH:
            blocks.append([])
            used = lead
        blocks[-1].append(index)
        used += needed
    return blocks


def to_csv(table: Table) -> str:
    """One row per table row; a statistics column becomes `<name> mean`, `<name> std`, `<name> n`.

    Numbers are written in full precision; text cells go to the `mean` field, empty cells stay empty.
    """
    stat_columns = [any(isinstance(cells[i], Stat) for _, cells in table.rows) for i in range(len(table.columns))]
    header = [table.row_header]
    for column, has_stats in zip(table.columns, stat_columns, strict=True):
        header += [f"{column.name} mean", f"{column.name} std", f"{column.name} n"] if has_stats else [column.name]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for label, cells in table.rows:
        row: list[str] = [label]
        for cell, has_stats in zip(cells, stat_columns, strict=True):
            row += _csv_fields(cell) if has_stats else ["" if cell is None else str(cell)]
        writer.writerow(row)
    return buffer.getvalue()


def _csv_fields(cell: Cell) -> list[str]:
    if isinstance(cell, Stat):
        return [repr(cell.mean), "" if math.isnan(cell.std) else repr(cell.std), str(cell.n)]
    return ["" if cell is None else cell, "", ""]


def words(items: list[str]) -> str:
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
