"""grpcio's own cost per call: a PredictionService whose Predict returns one constant answer.

    .venv/bin/python benchmarks/grpc_floor.py PORT ANSWER_FILE

A grpc.aio server on 127.0.0.1:PORT (SO_REUSEPORT, so several of them share the port as
`movierec serve --workers N` does) that answers every Predict with the serialized
PredictResponse in ANSWER_FILE, and does nothing else: no model, no admission, no metrics.
Under the same load as `movierec serve`, it gives the latency grpcio's asyncio server and
the machine's loopback need by themselves (`benchmarks/serving.py --grpc-floor`). Prints
"serving" once it listens.
"""
from __future__ import annotations

import asyncio
import sys

import grpc
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


class ConstantPredict(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, answer: predict_pb2.PredictResponse):
        self.answer = answer

    async def Predict(self, request, context):  # noqa: N802 - gRPC method name
        return self.answer


async def serve(port: int, answer: predict_pb2.PredictResponse) -> None:
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(ConstantPredict(answer), server)
    if not server.add_insecure_port(f"127.0.0.1:{port}"):
        raise OSError(f"could not bind 127.0.0.1:{port}")
    await server.start()
    print("serving", flush=True)
    await server.wait_for_termination()


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    answer = predict_pb2.PredictResponse()
    with open(sys.argv[2], "rb") as f:
        answer.ParseFromString(f.read())
    asyncio.run(serve(int(sys.argv[1]), answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
