"""Sparsity pattern names as they appear in configs and tables: "dense", an
unstructured ratio such as "0.6", or "N:M". Kept free of heavy imports: every
evaluation job parses patterns (through provenance), the table job too, and the
Snakefile's config check parses every configured pattern (`SparsityPattern`).

One grammar: `SparsityPattern` is what the pruning engine runs; `parse_pattern` adds
"dense" for the reports' unpruned row and orders patterns in tables."""

from __future__ import annotations

from dataclasses import dataclass

DENSE = "dense"


@dataclass(frozen=True)
class PatternKey:
    """Parsed sparsity pattern: dense, unstructured ratio or N:M.

    N:M follows the Wanda/SparseGPT convention: n of every m weights are pruned,
    so its sparsity is n / m (2:4 and 4:8 are both 0.5).
    """

    kind: str  # "dense" | "unstructured" | "nm"
    ratio: float  # sparsity in [0, 1]
    n: int = 0
    m: int = 0

    @property
    def sort_key(self) -> tuple[int, float, int, int]:
        """dense < unstructured by ratio ascending < N:M by (M, N) (2:4 < 4:8)."""
        rank = {"dense": 0, "unstructured": 1, "nm": 2}[self.kind]
        if self.kind == "nm":
            return (rank, 0.0, self.m, self.n)
        return (rank, self.ratio, 0, 0)


@dataclass(frozen=True)
class SparsityPattern:
    """Unstructured `sparsity`, or N:M (prune N of every M consecutive inputs)."""

    sparsity: float
    prune_n: int = 0
    prune_m: int = 0

    @classmethod
    def parse(cls, text: str) -> SparsityPattern:
        """ "0.5" -> 50 % unstructured; "2:4" -> 2:4 semi-structured (50 %)."""
        text = str(text).strip()
        if ":" in text:
            n_text, _, m_text = text.partition(":")
            try:
                n, m = int(n_text), int(m_text)
            except ValueError:
                raise ValueError(
                    f"malformed N:M pattern {text!r}: expected e.g. '2:4'"
                ) from None
            if not 0 < n < m:
                raise ValueError(f"malformed N:M pattern {text!r}: need 0 < N < M")
            return cls(sparsity=n / m, prune_n=n, prune_m=m)
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"malformed sparsity {text!r}: expected a number or N:M"
            ) from None
        if not 0.0 <= value < 1.0:
            raise ValueError(f"sparsity {value} is outside [0, 1)")
        return cls(sparsity=value)

    @property
    def label(self) -> str:
        return (
            f"{self.prune_n}:{self.prune_m}" if self.prune_n else f"{self.sparsity:g}"
        )


def parse_pattern(pattern: str) -> PatternKey:
    """Parse ``"dense"``, an unstructured ratio ``"0.6"`` (0 < s < 1) or ``"2:4"``:
    the engine's grammar (`SparsityPattern`) plus "dense", which names the only 0 % row.
    """
    if not isinstance(pattern, str):
        raise ValueError(f"pattern must be a string, got {pattern!r}")
    if pattern.strip() == DENSE:
        return PatternKey("dense", 0.0)
    try:
        parsed = SparsityPattern.parse(pattern)
    except ValueError as error:
        raise ValueError(f"bad pattern {pattern!r}: {error}") from None
    if parsed.prune_n:
        return PatternKey("nm", parsed.sparsity, parsed.prune_n, parsed.prune_m)
    if parsed.sparsity == 0.0:
        raise ValueError(
            f"bad pattern {pattern!r}: 0 % unstructured is the 'dense' row"
        )
    return PatternKey("unstructured", parsed.sparsity)
