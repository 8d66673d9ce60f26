"""Method plug-ins for the engine: which statistic each Linear accumulates, and how it
becomes a mask. The tensor math itself lives in `atvprune.methods` (pure functions).

Registry keys are the values allowed for `methods.<run>.method` in config/schema.yaml;
they and each method's parameters are listed in `atvprune.catalog.METHOD_PARAMS` (free
of torch, for the config check).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from atvprune import methods
from atvprune.catalog import method_params
from atvprune.engine import LayerContext, SparsityPattern, prefix_inputs


class Pruner:
    """Base plug-in. `add(sample, x_in, y_out)` is called by the engine's dense pass."""

    name = "base"
    needs_calibration = True

    def prepare(self, layers, samples, run_dense, pattern: SparsityPattern) -> dict:
        """Called once before the layer loop (for whole-model decisions such as DAS's
        per-Linear sparsities); returns numbers for prune_stats.json."""
        return {}

    def start_layer(self, ctx: LayerContext) -> None:
        self.ctx = ctx

    def new_statistic(self, name: str, linear: torch.nn.Linear):
        return None

    def prune(self, name, linear, statistic, pattern: SparsityPattern) -> torch.Tensor:
        raise NotImplementedError


class MagnitudePruner(Pruner):
    """|W|, per layer-matrix (locuslab/wanda rule) or per output row."""

    name = "magnitude"
    needs_calibration = False

    def __init__(self, per_row: bool = False):
        self.per_row = per_row

    def prune(self, name, linear, statistic, pattern):
        return methods.magnitude_mask(
            linear.weight.data,
            pattern.sparsity,
            pattern.prune_n,
            pattern.prune_m,
            per_row=self.per_row,
        )


class _ScalerStatistic:
    """Wanda's running mean of squared input norms over chosen tokens per sample."""

    def __init__(self, linear, choose_tokens, unit_per_token: bool = False):
        self.scaler = methods.RunningScaler(
            linear.in_features, device=linear.weight.device
        )
        self.choose_tokens = choose_tokens
        self.unit_per_token = unit_per_token

    def add(self, sample: int, x_in: torch.Tensor, y_out: torch.Tensor) -> None:
        tokens = self.choose_tokens(sample, x_in, y_out)
        unit = tokens.shape[0] if self.unit_per_token else 1
        if unit == 0:
            return
        self.scaler.add(tokens, unit=unit)


class WandaPruner(Pruner):
    """|W| * ||X_j||_2 with all calibration tokens, per-row (or N:M) masks."""

    name = "wanda"

    def new_statistic(self, name, linear):
        return _ScalerStatistic(linear, lambda j, x, y: x)

    def prune(self, name, linear, statistic, pattern):
        return methods.wanda_mask(
            linear.weight.data,
            statistic.scaler.value,
            pattern.sparsity,
            pattern.prune_n,
            pattern.prune_m,
        )


@dataclass(frozen=True)
class TokenPolicy:
    """Which visual tokens join the text tokens in ATV's statistic (methods.md 6, 6.1).

    kind: "adaptive" (ATV: top-k drift, k from the layer's mean drift and alpha),
    "drift_fixed" (top-k drift, k = round(ratio * n_text)), "random_fixed" (k random
    visual tokens, same k), "text_only", "visual_only" (visual tokens only, no text).
    """

    kind: str = "adaptive"
    alpha: float = 1.0
    ratio: float = 0.10
    drift_dtype: str = "model"  # "model" (official code) or "float32" (determinism)

    KINDS = ("adaptive", "drift_fixed", "random_fixed", "text_only", "visual_only")


class AtvPruner(WandaPruner):
    """ATV-Pruning: Wanda's score, statistic from all text + selected visual tokens."""

    name = "atv"

    def __init__(self, policy: TokenPolicy | None = None, seed: int = 0):
        self.policy = policy or TokenPolicy()
        if self.policy.kind not in TokenPolicy.KINDS:
            raise ValueError(
                f"unknown ATV token policy {self.policy.kind!r}; "
                f"choose from {TokenPolicy.KINDS}"
            )
        self.generator = torch.Generator().manual_seed(seed)

    def start_layer(self, ctx: LayerContext) -> None:
        super().start_layer(ctx)
        policy = self.policy
        n_text = [int((~m).sum()) for m in ctx.image_masks]
        n_img = [int(m.sum()) for m in ctx.image_masks]
        self.indices: list[torch.Tensor] | None = None
        self._positions: list[torch.Tensor] | None = None
        if policy.kind in ("text_only", "visual_only"):
            if policy.kind == "text_only":
                self.indices = [torch.zeros(0, dtype=torch.long) for _ in n_img]
            self._record_budget([0 if policy.kind == "text_only" else n for n in n_img])
            return
        if policy.kind == "random_fixed":
            ks = [
                methods.fixed_ratio_budget(t, v, policy.ratio)
                for t, v in zip(n_text, n_img, strict=True)
            ]
            self.indices = [
                methods.random_visual_indices(v, k, self.generator)
                for v, k in zip(n_img, ks, strict=True)
            ]
            self._record_budget(ks)
            return
        drifts = self._dense_drifts(ctx)
        if policy.kind == "adaptive":
            mean, ks, self.indices = methods.atv_select_from_drifts(
                drifts, n_text, policy.alpha
            )
        else:
            all_drift = torch.cat(drifts) if drifts else torch.zeros(0)
            mean = float(all_drift.mean().item()) if all_drift.numel() else 0.0
            ks = [
                methods.fixed_ratio_budget(t, v, policy.ratio)
                for t, v in zip(n_text, n_img, strict=True)
            ]
            self.indices = [
                methods.top_drift_indices(d, k) for d, k in zip(drifts, ks, strict=True)
            ]
        ctx.record["mean_drift"] = round(mean, 6)
        self._record_budget(ks)

    def _record_budget(self, ks: list[int]) -> None:
        self.ctx.record["k"] = list(ks)
        self.ctx.record["k_mean"] = round(sum(ks) / len(ks), 4) if ks else 0.0

    def _dense_drifts(self, ctx: LayerContext) -> list[torch.Tensor]:
        """1 - cos(layer input, dense layer output) per visual token of every sample.

        Only each sample's prefix up to its last visual token is run: causal attention
        makes the visual tokens' outputs independent of the text after them. Samples
        whose prefixes share length and layer inputs (same positions, same mask: the
        usual case, the image sits at a fixed place in the chat template) run as one
        batch."""
        prefixes = []
        for hidden, kw, mask in zip(
            ctx.inputs, ctx.layer_kwargs, ctx.image_masks, strict=True
        ):
            length = int(mask.nonzero().max()) + 1 if mask.any() else 0
            prefixes.append((*prefix_inputs(hidden, kw, length), mask[:length]))
        outputs: list[torch.Tensor | None] = [None] * len(prefixes)
        for group in _same_layer_inputs(prefixes):
            hidden = torch.cat([prefixes[j][0] for j in group])
            out = ctx.run_dense(hidden, prefixes[group[0]][1])
            for row, j in enumerate(group):
                outputs[j] = out[row]
        drifts = []
        for (hidden, _, mask), out in zip(prefixes, outputs, strict=True):
            x_in, x_out = hidden[0][mask], out[mask]
            if self.policy.drift_dtype == "float32":
                x_in, x_out = x_in.float(), x_out.float()
            drifts.append(methods.visual_drift(x_in, x_out).float())
        return drifts

    def new_statistic(self, name, linear):
        masks = self.ctx.image_masks
        if self.policy.kind == "visual_only":
            return _ScalerStatistic(
                linear,
                lambda j, x, y: methods.visual_only_tokens(x, masks[j]),
            )
        if self._positions is None:
            # Once per layer, not per Linear: the same rows of every Linear input.
            self._positions = [
                _calibration_positions(mask, index)
                for mask, index in zip(masks, self.indices, strict=True)
            ]
        positions = self._positions
        return _ScalerStatistic(linear, lambda j, x, y: x.index_select(0, positions[j]))


def _calibration_positions(
    image_mask: torch.Tensor, visual_index: torch.Tensor
) -> torch.Tensor:
    """Token positions of `methods.calibration_tokens`: every text position, then the
    selected visual ones, in that order (so `x.index_select(0, positions)` equals
    `calibration_tokens(x, image_mask, visual_index)` row for row)."""
    text = (~image_mask).nonzero().squeeze(1)
    visual = image_mask.nonzero().squeeze(1)
    return torch.cat([text, visual[visual_index.to(visual.device)]])


def _same_layer_inputs(prefixes) -> list[list[int]]:
    """Indices of prefixes grouped by equal length and equal layer keyword inputs."""
    groups: list[list[int]] = []
    for j, (hidden, kwargs, _) in enumerate(prefixes):
        for group in groups:
            first_hidden, first_kwargs, _ = prefixes[group[0]]
            if first_hidden.shape == hidden.shape and _equal(first_kwargs, kwargs):
                group.append(j)
                break
        else:
            groups.append([j])
    return groups


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, tuple | list):
        return (
            isinstance(b, tuple | list)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return a == b


class TampPruner(WandaPruner):
    """TAMP with uniform sparsity: AMIA token selection per Linear and sample (from the
    Linear's output and the layer's last-token attention), Wanda statistic with one unit
    per selected token, Wanda masks (methods.md 5.1-5.2)."""

    name = "tamp"

    def __init__(self, adapter):
        self.adapter = adapter

    def start_layer(self, ctx: LayerContext) -> None:
        super().start_layer(ctx)
        ctx.attention_scores = [
            self.adapter.last_token_attention(ctx.layer, hidden, kw)
            for hidden, kw in zip(ctx.inputs, ctx.layer_kwargs, strict=True)
        ]
        self.selected_counts: dict[str, list[int]] = {}
        ctx.record["tamp_selected"] = self.selected_counts

    def new_statistic(self, name, linear):
        masks, scores = self.ctx.image_masks, self.ctx.attention_scores
        counts = self.selected_counts.setdefault(name, [])

        def choose(j, x, y):
            index = methods.amia_select(y.float(), scores[j], masks[j])
            counts.append(int(index.numel()))
            return x[index]

        return _ScalerStatistic(linear, choose, unit_per_token=True)


class TampDasPruner(TampPruner):
    """TAMP with its diversity-aware layer-wise sparsity (DAS, methods.md 5.3).

    Before pruning, the *dense* model runs layer by layer on the calibration samples;
    every Linear's output gives the density terms (m_vv, m_tt, m_vt) as a running mean
    over samples, and the Linear's score is ``(1-m_vv) + (1-m_tt) + (1-m_vt)``. The
    budget loop (`methods.das_allocate`, max_s = s + 0.1, each Linear its own group)
    turns the scores into one sparsity per Linear; pruning is then TAMP's (AMIA tokens,
    Wanda rows) at that sparsity. DAS allocates unstructured sparsity, so N:M patterns
    are refused (TAMP's N:M rows are uniform by construction)."""

    name = "tamp_das"
    MAX_SPARSITY_MARGIN = 0.1  # the TAMP script's --max_sparsity_per_layer s+0.1

    def prepare(self, layers, samples, run_dense, pattern):
        if pattern.prune_n:
            raise ValueError(
                f"method 'tamp_das' allocates unstructured per-Linear sparsities; "
                f"N:M pattern {pattern.label} is not supported (use 'tamp')"
            )
        from atvprune.engine import find_linears  # engine imports this module's base

        keys, numels, scores = [], [], []
        hidden = [s.hidden for s in samples]
        for i, layer in enumerate(layers):
            linears = find_linears(layer)
            sums = {name: torch.zeros(3, dtype=torch.float64) for name in linears}
            current = {"mask": None}
            handles = []
            for name, linear in linears.items():

                def hook(module, args, output, name=name, sums=sums, current=current):
                    d = methods.modality_density(output[0], current["mask"])
                    sums[name] += torch.tensor([d.m_vv, d.m_tt, d.m_vt])

                handles.append(linear.register_forward_hook(hook))
            outputs = []
            try:
                for sample, h in zip(samples, hidden, strict=True):
                    current["mask"] = sample.image_mask
                    outputs.append(run_dense(layer, h, sample.layer_kwargs))
            finally:
                for handle in handles:
                    handle.remove()
            hidden = outputs
            for name, linear in linears.items():
                m_vv, m_tt, m_vt = (sums[name] / len(samples)).tolist()
                keys.append(f"layer{i}.{name}")
                numels.append(linear.weight.numel())
                scores.append(methods.das_score(m_vv, m_tt, m_vt))
        max_sparsity = min(1.0, pattern.sparsity + self.MAX_SPARSITY_MARGIN)
        allocated = methods.das_allocate(numels, scores, pattern.sparsity, max_sparsity)
        self.sparsity_of = dict(zip(keys, allocated, strict=True))
        return {
            "das_max_sparsity": max_sparsity,
            "das_scores": {k: round(v, 6) for k, v in zip(keys, scores, strict=True)},
            "das_sparsity": {k: round(v, 6) for k, v in self.sparsity_of.items()},
        }

    def prune(self, name, linear, statistic, pattern):
        sparsity = self.sparsity_of[f"layer{self.ctx.index}.{name}"]
        return methods.wanda_mask(linear.weight.data, statistic.scaler.value, sparsity)


class SparseGptPruner(Pruner):
    """OBS reconstruction with the running Hessian 2/N sum X^T X (IST-DASLab)."""

    name = "sparsegpt"

    def __init__(self, blocksize: int = 128, percdamp: float = 0.01):
        self.blocksize = blocksize
        self.percdamp = percdamp

    def new_statistic(self, name, linear):
        return _HessianStatistic(linear)

    def prune(self, name, linear, statistic, pattern):
        new_weight, mask = methods.sparsegpt_prune(
            linear.weight.data,
            statistic.hessian.value,
            pattern.sparsity,
            pattern.prune_n,
            pattern.prune_m,
            blocksize=self.blocksize,
            percdamp=self.percdamp,
        )
        linear.weight.data.copy_(new_weight)
        return mask


class _HessianStatistic:
    def __init__(self, linear):
        self.hessian = methods.RunningHessian(
            linear.in_features, device=linear.weight.device
        )

    def add(self, sample, x_in, y_out):
        self.hessian.add(x_in)


def build_pruner(spec: dict, seed: int = 0, adapter=None) -> Pruner:
    """A pruner from one `methods.<run>` config entry: {"method": key, **params}.

    `adapter` is needed by methods that look inside attention (TAMP). Unknown methods
    and parameters are refused by `catalog.method_params`, the same check the config
    check runs when the Snakefile is parsed."""
    key, params = method_params(spec)
    if key == "tamp":
        return TampPruner(adapter)
    if key == "tamp_das":
        return TampDasPruner(adapter)
    return PRUNERS[key](params, seed)


def _atv(policy_kind: str):
    def make(params: dict, seed: int) -> Pruner:
        return AtvPruner(TokenPolicy(kind=policy_kind, **params), seed=seed)

    return make


def _no_params(cls, **fixed):
    def make(params: dict, seed: int) -> Pruner:
        return cls(**fixed)

    return make


PRUNERS = {
    "magnitude": _no_params(MagnitudePruner),
    "magnitude_row": _no_params(MagnitudePruner, per_row=True),
    "wanda": _no_params(WandaPruner),
    "sparsegpt": lambda params, seed: SparseGptPruner(**params),
    "tamp": None,  # built in build_pruner: it needs the model adapter
    "tamp_das": None,
    "atv": _atv("adaptive"),
    "atv_drift_fixed": _atv("drift_fixed"),
    "atv_random_fixed": _atv("random_fixed"),
    "atv_text_only": _atv("text_only"),
    "atv_visual_only": _atv("visual_only"),
}
