"""Deployment exports: ONNX, INT8 ONNX and TorchScript, each verified on data before it counts.

`export_deployment(reg, ref, to_dir, fmt, data=...) -> DeployResult` (see
`ckreg.deploy.core`); `FORMATS`. Needs the `[train]` extra (torch builds and
exports the model) and, for ONNX, the `[deploy]` extra (onnx, onnxruntime).
"""

from __future__ import annotations

from ckreg.deploy.formats import DEPLOY_EXTRA, FORMATS, ExportError

__all__ = ["FORMATS", "DEPLOY_EXTRA", "ExportError", "export_deployment", "DeployResult"]


def __getattr__(name: str):
    if name in ("export_deployment", "DeployResult", "DEFAULT_TOLERANCE"):
        from ckreg.deploy import core

        return getattr(core, name)
    raise AttributeError(name)
