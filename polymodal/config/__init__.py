"""The configuration schema (pydantic v2): YAML in, validated objects out.

Sections: ``task`` / ``target``, ``modalities`` (kind, column(s), preprocess, encoder),
``fusion``, ``head``, ``loss``, ``decision``, ``tasks`` (further targets), ``align``, ``transfer``,
``anomaly``, ``train``, ``data``, ``report`` and ``tune``; one module per section. An unknown key, a wrong type or an out-of-range value is a
:class:`~polymodal.errors.ConfigError` naming the full key path, what is allowed and what was given.
"""

from polymodal.config.align import *  # noqa: F401,F403
from polymodal.config.decision import *  # noqa: F401,F403
from polymodal.config.encoders import *  # noqa: F401,F403 - the component configs are part of the API
from polymodal.config.modalities import *  # noqa: F401,F403
from polymodal.config.model import *  # noqa: F401,F403
from polymodal.config.preprocess import *  # noqa: F401,F403
from polymodal.config.report import ReportConfig
from polymodal.config.root import Config, config_to_dict, json_schema, load_config, save_config
from polymodal.config.tasks import *  # noqa: F401,F403
from polymodal.config.train import DataConfig, EarlyStoppingConfig, LossConfig, TrainConfig
from polymodal.config.transfer import *  # noqa: F401,F403

__all__ = [
    "Config", "DataConfig", "EarlyStoppingConfig", "LossConfig", "ReportConfig", "TrainConfig",
    "config_to_dict", "json_schema", "load_config", "save_config",
]
