"""``python -m lockgate.finetune.launch REQUEST.json``: one training process started by an executor
(each ``torchrun`` rank runs this). Rank 0 reports to the registry; every rank stops when
the launching worker writes ``STOP`` next to the request (exit code 3)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lockgate.finetune.inference import quiet_model_libraries
from lockgate.finetune.spec import JobSpec
from lockgate.finetune.trainer import TrainingStopped, TrainInputs, train

STOPPED = 3


def main(argv: list[str]) -> int:
    quiet_model_libraries()  # as the worker that launched it: events, not library warnings
    request_path = Path(argv[0])
    data = json.loads(request_path.read_text(encoding="utf-8"))
    out = Path(data["output_dir"])
    inputs = TrainInputs(
        JobSpec.model_validate(data["spec"]),
        data["base_model"],
        Path(data["train_path"]),
        Path(data["val_path"]) if data["val_path"] else None,
        out,
        Path(data["checkpoint_dir"]),
    )
    from lockgate.finetune.reporting import RegistryHooks
    from lockgate.registry.registry import Registry
    from lockgate.registry.settings import RegistrySettings

    registry = Registry(RegistrySettings.model_validate(data["registry_settings"]))
    hooks = RegistryHooks(
        registry, data["job_id"], data["run_id"], (out / "STOP").exists,
        upload_checkpoints=data["upload_checkpoints"],
    )  # fmt: skip
    try:
        result = train(inputs, hooks)
    except TrainingStopped:
        return STOPPED
    finally:
        registry.close()
    (out / "result.json").write_text(json.dumps(result.to_dict()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
