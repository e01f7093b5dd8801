# Sourced by test.sh: a Kinesis test server for the kinesis connector's tests —
# moto's server mode from the same virtualenv as the S3 server (installed here when
# s3.sh has not yet), started through scripts/test.d/moto_kinesis.py, which fixes
# moto's routing of records to closed shards after a resharding (see that file).
# Its own process on its own port, so the S3 server stays moto as it is. Exports
# WEIR_TEST_KINESIS=1 and WEIR_TEST_KINESIS_ENDPOINT, and the AWS_* settings the
# tests use when they are not set yet (s3.sh sets the same ones).
kinesis_venv="$HOME/.cache/weir-s3-venv"
if [ ! -x "$kinesis_venv/bin/moto_server" ]; then
  echo "test.sh: installing moto (Kinesis and S3 test server) into $kinesis_venv"
  python3 -m venv "$kinesis_venv"
  "$kinesis_venv/bin/pip" install -q 'moto[server]'
fi
kinesis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$kinesis_venv/bin/python" scripts/test.d/moto_kinesis.py -H 127.0.0.1 -p "$kinesis_port" \
  >"${TMPDIR:-/tmp}/weir-moto-kinesis-$kinesis_port.log" 2>&1 &
pids+=("$!")
export WEIR_TEST_KINESIS=1 WEIR_TEST_KINESIS_ENDPOINT="http://127.0.0.1:$kinesis_port"
export AWS_REGION="${AWS_REGION:-us-east-1}" AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" \
  AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
for _ in $(seq 1 100); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $kinesis_port), 0.2)" 2>/dev/null && break
  sleep 0.1
done
echo "test.sh: Kinesis test server (moto) on $WEIR_TEST_KINESIS_ENDPOINT"
unset kinesis_venv kinesis_port
