"""Quantization configuration: one ``Config`` for PTQ and QAT, per-layer ``overrides`` by name."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRANULARITIES = ("per_tensor", "per_channel")
CALIBRATIONS = ("maxabs", "minmax", "percentile", "mse", "entropy")
ROUNDINGS = ("double", "single")
WEIGHT_ROUNDINGS = ("nearest", "gptq", "adaround", "qdrop")
BIAS_CORRECTIONS = ("none", "weights", "full")

# Named PTQ recipes: Config field values (see intquant.methods). The Config defaults are the
# "fast" recipe (GPTQ + full bias correction): measured the best of the fast recipes at W8A8,
# W4A8 and W4A4 (benchmarks/RESULTS.md). "accurate" adds the activation clipping search; on
# the zoo it measured on a par with "fast" (0.99-1.04x its logit error), not better: AdaRound
# and block reconstruction did not beat GPTQ there either. The single-method
# entries switch one method on over plain round-to-nearest, so that methods can be compared
# (and tried by a recommender) by name: Config.preset("gptq", weight_bits=4).
PLAIN: dict[str, Any] = {"weight_rounding": "nearest", "bias_correction": "none",
                         "equalize": False, "act_clipping": False}
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {},
    "accurate": {"weight_rounding": "gptq", "bias_correction": "full", "act_clipping": True},
    "nearest": PLAIN,
    "bias_correction": {**PLAIN, "bias_correction": "full"},
    "bias_correction_weights": {**PLAIN, "bias_correction": "weights"},
    "equalize": {**PLAIN, "equalize": True},
    "act_clipping": {**PLAIN, "act_clipping": True},
    "gptq": {**PLAIN, "weight_rounding": "gptq"},
    "adaround": {**PLAIN, "weight_rounding": "adaround"},
    "qdrop": {**PLAIN, "weight_rounding": "qdrop"},
    "brecq": {**PLAIN, "weight_rounding": "qdrop", "qdrop_prob": 0.0},
}

# Keys a per-layer override may set (the Config fields plus QAT's fixed grids).
LAYER_KEYS = (
    "weight_bits", "act_bits", "granularity", "calibration", "weight_calibration",
    "symmetric_activations", "power_of_two", "weight_scale", "act_range", "act_signed",
    "weight_quantizer", "act_quantizer",
)


@dataclass
class InputSpec:
    """The raw integer the sensor delivers: x_float = (raw·raw_scale − mean) / std.

    With an InputSpec the integer model's input *is* the raw integer; the normalisation becomes
    an integer rescale at the front of the graph, so the device never sees a float.
    """

    dtype: str = "uint8"
    raw_scale: float = 1.0 / 255.0
    mean: float = 0.0
    std: float = 1.0


@dataclass
class Config:
    """How to quantize. Defaults: TFLM-compatible int8 (W8A8, per-channel weights)."""

    weight_bits: int = 8
    act_bits: int = 8
    granularity: str | tuple = "per_channel"
    calibration: str = "mse"
    weight_calibration: str = "auto"  # maxabs at >= 8 bits, mse below
    symmetric_activations: bool = False
    power_of_two: bool = False
    rounding: str = "double"
    percentile: float = 99.99
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    input_spec: InputSpec | None = None
    max_calib_samples: int = 2048
    # Attention inside a model (two-activation matmuls): the operands of a matmul of two
    # activations (Q, K, V) and the scores a matmul feeds into a softmax are held at least this
    # wide (None: at act_bits like every other tensor). ptq.attention_tensors says which.
    attention_act_bits: int | None = 16
    # Calibrated ranges of activations wider than 8 bits are widened by this factor (symmetric,
    # so the scale grows by it): the largest value of a few hundred calibration samples is
    # exceeded by most new batches, and at 16 bits clipping those values costs far more than
    # the bit of resolution (16x8 SQNR vs float, benchmarks/architectures.py's setup:
    # MobileNetV3-small 36.3 -> 47.1 dB, TCN 40.0 -> 48.6 dB, no zoo model lower; a factor 4
    # measured the same as 2). 8-bit activations keep their calibrated range: there a bit of
    # resolution is what costs more.
    wide_act_headroom: float = 2.0
    # PTQ methods (intquant.methods; named recipes in PRESETS)
    bias_correction: str | bool = "full"  # none | weights | full (True = full, False = none)
    weight_rounding: str = "gptq"  # nearest | gptq | adaround | qdrop (block reconstruction)
    equalize: bool = False  # cross-layer equalization + bias absorption before calibration
    act_clipping: bool = False  # activation ranges searched for the output error
    gptq_damping: float = 0.01  # λ · mean(diag H) added to the Hessian's diagonal
    gptq_act_order: bool = True  # round the inputs with the largest diag(H) first
    gptq_float_target: bool = True  # below 8-bit weights, fit the float output (upstream too)
    recon_iters: int = 500  # AdaRound / block-reconstruction iterations per layer / block
    qdrop_prob: float = 0.5  # block reconstruction: P(activation kept in float); 0 = BRECQ
    method_samples: int = 1024  # calibration samples the data-driven methods use
    # QAT fields (used by intquant.qat.prepare)
    weight_quantizer: str = "uniform"
    act_quantizer: str = "uniform"
    first_last_bits: int | None = 8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if isinstance(self.granularity, list):
            self.granularity = tuple(self.granularity)
        g = self.granularity
        ok_block = isinstance(g, tuple) and len(g) == 2 and g[0] == "per_block"
        if g not in GRANULARITIES and not ok_block:
            raise ValueError(
                f"Config.granularity must be one of {GRANULARITIES} or ('per_block', n), got {g!r}"
            )
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"Config.calibration must be one of {CALIBRATIONS}, "
                             f"got {self.calibration!r}")
        if self.weight_calibration not in CALIBRATIONS + ("auto",):
            raise ValueError(f"Config.weight_calibration must be 'auto' or one of {CALIBRATIONS}")
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"Config.rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if not 1 <= self.weight_bits <= 16:
            raise ValueError(f"Config.weight_bits must be in [1, 16], got {self.weight_bits}")
        if not 1 <= self.act_bits <= 16:
            raise ValueError(f"Config.act_bits must be in [1, 16], got {self.act_bits}")
        if self.attention_act_bits is not None and not 1 <= self.attention_act_bits <= 16:
            raise ValueError("Config.attention_act_bits must be None or in [1, 16], got "
                             f"{self.attention_act_bits}")
        if isinstance(self.bias_correction, bool):
            self.bias_correction = "full" if self.bias_correction else "none"
        if self.bias_correction not in BIAS_CORRECTIONS:
            raise ValueError(f"Config.bias_correction must be one of {BIAS_CORRECTIONS} (or "
                             f"True / False), got {self.bias_correction!r}")
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise ValueError(f"Config.weight_rounding must be one of {WEIGHT_ROUNDINGS}, got "
                             f"{self.weight_rounding!r}")
        if not 0.0 <= self.qdrop_prob < 1.0:
            raise ValueError(f"Config.qdrop_prob must be in [0, 1), got {self.qdrop_prob}")
        if not self.wide_act_headroom >= 1.0:
            raise ValueError(f"Config.wide_act_headroom must be >= 1, got "
                             f"{self.wide_act_headroom}")
        if not self.gptq_damping > 0:
            raise ValueError(f"Config.gptq_damping must be > 0, got {self.gptq_damping}")
        for field_name in ("recon_iters", "method_samples"):
            if int(getattr(self, field_name)) < 1:
                raise ValueError(f"Config.{field_name} must be >= 1, got "
                                 f"{getattr(self, field_name)}")
        for name, ov in self.overrides.items():
            bad = set(ov) - set(LAYER_KEYS)
            if bad:
                raise ValueError(f"Config.overrides[{name!r}]: unknown keys {sorted(bad)}; "
                                 f"allowed: {LAYER_KEYS}")

    @classmethod
    def preset(cls, name: str, **changes: Any) -> Config:
        """A named recipe (``PRESETS``: "fast" = the defaults, "accurate", or one method such
        as "gptq"), with ``changes`` on top: ``Config.preset("accurate", weight_bits=4)``."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **changes})

    def methods(self) -> str:
        """The PTQ methods this Config runs, in pipeline order (for reports)."""
        steps = ["cross-layer equalization"] if self.equalize else []
        steps += ["activation clipping search"] if self.act_clipping else []
        steps.append({"nearest": "round to nearest", "gptq": "GPTQ",
                      "adaround": "AdaRound", "qdrop": "block reconstruction (QDrop "
                      f"p={self.qdrop_prob:g})"}[self.weight_rounding])
        if self.bias_correction != "none":
            steps.append(f"bias correction ({self.bias_correction})")
        return " → ".join(steps)

    def for_layer(self, name: str) -> dict[str, Any]:
        """The effective settings of one layer: the global fields with its override applied."""
        base = {k: getattr(self, k) for k in LAYER_KEYS if hasattr(self, k)}
        base.update({"weight_scale": None, "act_range": None, "act_signed": None})
        base.update(self.overrides.get(name, {}))
        return base

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["overrides"] = {
            k: {kk: (vv.tolist() if hasattr(vv, "tolist") else vv) for kk, vv in v.items()}
            for k, v in self.overrides.items()
        }
        return json.dumps(d, indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> Config:
        fields = {f.name for f in dataclasses.fields(cls)}
        bad = set(d) - fields
        if bad:
            raise ValueError(
                f"{where}: unknown Config fields {sorted(bad)}; known: {sorted(fields)}"
            )
        d = dict(d)
        if isinstance(d.get("input_spec"), dict):
            d["input_spec"] = InputSpec(**d["input_spec"])
        return cls(**d)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            d = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from None
        return cls.from_dict(d, where=str(path))
