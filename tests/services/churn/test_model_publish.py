"""The churn model through the one publisher (`enterprisehub model publish`) and back.

The stacks publish the image's churn model with the same command as the lead
model (the churn-model-publish Job) and churn-orchestrator loads the prefix
(CHURN_MODEL_URI=s3://bucket/churn-risk/) through its ``current.json`` alias.
S3 is moto's S3-compatible server, so boto3 runs its real request path.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.churn.model import ChurnModel
from services.cli import main as cli_main
from services.common.scoring import ArtifactCompatibilityError, ModelArtifactError
from services.ml.publish import PUBLISHABLE_MODELS, publish

BUCKET = "enterprisehub-churn-models"
PREFIX_URI = f"s3://{BUCKET}/churn-risk/"


@pytest.fixture
def s3(s3_bucket: Callable[[str], Any]) -> Any:
    """A client for a fresh bucket; the environment points the code at the server."""
    return s3_bucket(BUCKET)


def test_the_cli_publishes_the_churn_model_and_the_service_loads_the_prefix(
    s3: Any, churn_artifact: Path, churn_model: ChurnModel, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["model", "publish", "--from", str(churn_artifact), "--to", PREFIX_URI])
    output = capsys.readouterr()
    assert code == 0, output.err
    # The line to deploy names the churn model's own setting, not the lead model's.
    assert output.out.splitlines()[-1] == f"CHURN_MODEL_URI={PREFIX_URI}"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    version = churn_model.version
    assert keys == [
        "churn-risk/current.json",
        f"churn-risk/{version}/model.joblib",
        f"churn-risk/{version}/model.joblib.json",
    ]
    loaded = ChurnModel.load(PREFIX_URI, s3=s3)
    assert loaded.version == version
    assert loaded.uri == f"s3://{BUCKET}/churn-risk/{version}/model.joblib"
    rows = np.random.default_rng(3).uniform(0, 50, size=(64, len(loaded.metadata.features)))
    assert np.array_equal(loaded.predict(rows), churn_model.predict(rows))


def test_publishing_the_same_churn_model_again_uploads_nothing(
    s3: Any, churn_artifact: Path
) -> None:
    first = publish(churn_artifact, PREFIX_URI)
    again = publish(churn_artifact, PREFIX_URI)
    assert (first.uploaded, first.repointed, first.setting) == (True, True, "CHURN_MODEL_URI")
    assert (again.uploaded, again.repointed) == (False, False)


def test_an_artifact_of_an_unknown_model_is_refused(churn_artifact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "model.joblib"
    shutil.copy(churn_artifact, copy)
    metadata = json.loads(Path(str(churn_artifact) + ".json").read_text())
    Path(str(copy) + ".json").write_text(json.dumps({**metadata, "model_name": "fraud"}))
    with pytest.raises(ModelArtifactError, match="'fraud' model"):
        publish(copy, (tmp_path / "store").as_uri())
    assert not (tmp_path / "store").exists()


def test_a_churn_artifact_with_other_features_is_refused(
    churn_artifact: Path, tmp_path: Path
) -> None:
    # Checked against the churn schema (what churn-orchestrator loads), not the lead one's.
    copy = tmp_path / "model.joblib"
    shutil.copy(churn_artifact, copy)
    metadata = json.loads(Path(str(churn_artifact) + ".json").read_text())
    metadata["features"] = list(reversed(metadata["features"]))
    Path(str(copy) + ".json").write_text(json.dumps(metadata))
    with pytest.raises(ArtifactCompatibilityError, match="order differs: True"):
        publish(copy, (tmp_path / "store").as_uri())


def test_every_publishable_model_names_its_training_and_settings() -> None:
    from services.churn import training as churn_training
    from services.churn.config import ChurnSettings
    from services.common.lead_model.settings import LeadModelSettings
    from services.ml import training as lead_training

    assert set(PUBLISHABLE_MODELS) == {lead_training.MODEL_NAME, churn_training.MODEL_NAME}
    assert PUBLISHABLE_MODELS[churn_training.MODEL_NAME].setting.lower() in (
        ChurnSettings.model_fields
    )
    assert PUBLISHABLE_MODELS[lead_training.MODEL_NAME].setting.lower() in (
        LeadModelSettings.model_fields
    )
