# The pipeline image: Python 3.10, what the pipeline's commands need at the locked versions,
# and the movierec package. Kubeflow Pipelines / Vertex AI run every component in it as
#   python -m movierec.pipeline.kubeflow_v2_runner --executor_class_path ... (see docs/kubeflow.md)
# and it runs `movierec` itself:
#   docker build -t movierec:latest .
#   docker run --rm -v $PWD/data:/data -v $PWD/outputs:/outputs movierec:latest \
#       run --data-dir /data/ml-100k --output-dir /outputs
FROM python:3.10-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/movierec

# The runtime part of requirements.in, every version pinned by requirements.lock (-c): TFX
# with its Kubeflow V2 container entry point (tfx[kfp]), TF Serving's API (movierec serve),
# tensorflow-io (s3:// for TensorFlow), apache-beam[aws] (boto3: s3:// for Beam's file I/O),
# dill, matplotlib (reports). Left out: the test tools (pytest, hypothesis, moto and its
# server's dependencies), 30 of the lock's 309 packages.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir uv==0.13.9 \
 && python -m uv pip install --system --no-cache --compile-bytecode -c requirements.lock \
      "tfx[kfp]==1.16.0" "tensorflow-serving-api==2.16.1" "tensorflow-io==0.37.1" "apache-beam[aws]" \
      dill matplotlib

COPY setup.py ./
COPY movierec/ movierec/
COPY components/ components/
COPY pipeline/ pipeline/
COPY serving/ serving/
RUN python -m uv pip install --system --no-cache --compile-bytecode --no-deps . \
 && movierec --help > /dev/null \
 && python -c "import tensorflow as tf, tensorflow_io, apache_beam.io.aws.s3filesystem; \
assert 's3' in tf.io.gfile.get_registered_schemes(); import movierec.pipeline.kubeflow_v2_runner"

ENTRYPOINT ["movierec"]
