"""MovieLensExampleGen: a FileBasedExampleGen for MovieLens folders.

Inputs: `input_base`, a folder with `u.data`+`u.item` (ml-100k) or `ratings.csv`+`movies.csv`
(ml-latest); or, with `span_window` set, a folder of `span-<N>/` MovieLens folders (see
`movierec.components.data.spans`). Output: `examples` (Parquet, one row per rating, in
`features.raw_arrow_schema()`) with `train` and `eval` splits,
split by a hash of each example in the ratio `100 - eval_percent : eval_percent`, and the
artifact's `span` property set to the latest span read.

Extra execution parameters:
  max_bad_records  how many invalid lines may be skipped (each is logged with file and
                   line); more than that fails the component with a DataError.
  span_window      None: `input_base` is one MovieLens folder. 0: every span up to the
                   latest. W >= 1: the last W spans. The driver resolves the latest span
                   and fingerprints every file of the window, so TFX's cache misses when
                   any of them changes and hits when no new span arrived.
"""
from __future__ import annotations

from typing import Optional

from tfx.components.example_gen import driver, utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.types import channel

from movierec.components.data import spans
from movierec.components.movielens_example_gen import executor

PATTERN = "*"


class MovieLensExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        executor.MAX_BAD_RECORDS_KEY: ExecutionParameter(type=int, optional=True),
        executor.SPAN_WINDOW_KEY: ExecutionParameter(type=int, optional=True),
    }


class MovieLensDriver(driver.FileBasedDriver):
    """TFX's file driver (latest `{SPAN}`), plus every span of the window in the fingerprint."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        size = exec_properties.get(executor.SPAN_WINDOW_KEY)
        if size is not None and int(size) >= 0:
            folders = spans.window_dirs(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                                        int(exec_properties[utils.SPAN_PROPERTY_NAME]), int(size))
            exec_properties[utils.FINGERPRINT_PROPERTY_NAME] = (
                f"window={int(size)};" + spans.files_fingerprint(folders))
        return exec_properties


def split_config(eval_percent: int) -> example_gen_pb2.Output:
    """Hash-bucket split into train/eval, `eval_percent` of 100 buckets to eval."""
    if not 1 <= eval_percent <= 99:
        raise ValueError(f"eval_percent must be in 1..99, got {eval_percent}")
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=100 - eval_percent),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=eval_percent),
    ]))


class MovieLensExampleGen(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = MovieLensExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = MovieLensDriver

    def __init__(self, input_base: str, eval_percent: int = 20, max_bad_records: int = 0,
                 span_window: Optional[int] = None, range_config: Optional[object] = None):
        """span_window: None for one MovieLens folder; 0 (all) or W for `span-<N>/` folders.
        range_config: TFX RangeConfig with a static_range, to (re)read one given span."""
        if max_bad_records < 0:
            raise ValueError(f"max_bad_records must be >= 0, got {max_bad_records}")
        if span_window is not None and span_window < 0:
            raise ValueError(f"span_window must be None or >= 0 (0: all spans), got {span_window}")
        pattern = PATTERN if span_window is None else spans.SPLIT_PATTERN
        input_config = example_gen_pb2.Input(splits=[
            example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])
        spec = MovieLensExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=split_config(eval_percent),
            custom_config=None,
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_PARQUET,
            output_file_format=example_gen_pb2.FILE_FORMAT_PARQUET,
            examples=channel.Channel(type=standard_artifacts.Examples),
            **{executor.MAX_BAD_RECORDS_KEY: max_bad_records,
               executor.SPAN_WINDOW_KEY: span_window},
        )
        super().__init__(spec=spec)
