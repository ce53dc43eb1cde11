"""benchmarks/grpc_floor.py: the constant-answer gRPC server behind `serving.py --grpc-floor`."""
import os
import subprocess
import sys

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import serving as serving_bench  # noqa: E402


def test_grpc_floor_answers_every_call_with_its_constant_answer(tmp_path):
    answer = predict_pb2.PredictResponse()
    answer.model_spec.name = "mf"
    answer.outputs["movie_ids"].string_val.extend([b"50", b"181"])
    answer.outputs["scores"].float_val.extend([4.5, 4.25])
    path = tmp_path / "answer.pb"
    path.write_bytes(answer.SerializeToString())
    port = serving_bench.free_port()
    server = subprocess.Popen([sys.executable, os.path.join(REPO, "benchmarks", "grpc_floor.py"), str(port), str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "serving"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for user in ("13", "999"):   # whatever is asked, the same answer
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "mf"
                request.inputs["user_id"].string_val.append(user.encode())
                got = stub.Predict(request, timeout=30)
                assert list(got.outputs["movie_ids"].string_val) == [b"50", b"181"]
                assert list(got.outputs["scores"].float_val) == [4.5, 4.25]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_grpc_floor_refuses_wrong_arguments():
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "grpc_floor.py")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "PORT ANSWER_FILE" in done.stderr
