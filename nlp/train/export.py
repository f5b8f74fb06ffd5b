"""ONNX export of a trained transformer, so inference never needs torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class _LogitsOnly:
    """Wraps a model so the ONNX graph has plain tensor inputs and one output named 'logits'."""

    def __init__(self, torch: Any, model: Any) -> None:
        class Wrapper(torch.nn.Module):  # type: ignore[misc]  # torch arrives as a lazily imported module
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any) -> Any:
                return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

        self.module = Wrapper().eval()


def export_onnx(torch: Any, model: Any, path: Path) -> None:
    import warnings

    wrapper = _LogitsOnly(torch, model).module
    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones((2, 8), dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The TorchScript exporter (dynamo=False) needs no onnxscript and handles dynamic batch/length.
        torch.onnx.export(
            wrapper, (ids, mask), str(path), input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
