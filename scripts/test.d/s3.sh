# Sourced by test.sh: a real S3-compatible server (moto) on 127.0.0.1 for the
# checkpoint-storage tests, with a bucket and the usual AWS_* variables.
s3_venv="$HOME/.cache/weir-s3-venv"
if [ ! -x "$s3_venv/bin/moto_server" ]; then
  echo "test.sh: installing the S3 test server (moto) into $s3_venv"
  python3 -m venv "$s3_venv"
  "$s3_venv/bin/pip" install -q 'moto[server]'
fi
s3_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$s3_venv/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"${TMPDIR:-/tmp}/weir-moto-$s3_port.log" 2>&1 &
pids+=("$!")
export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test WEIR_TEST_S3_BUCKET=weir-test
for _ in $(seq 1 100); do
  "$s3_venv/bin/python" - <<'PY' 2>/dev/null && break
import boto3, os
boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]).create_bucket(Bucket=os.environ["WEIR_TEST_S3_BUCKET"])
PY
  sleep 0.1
done
echo "test.sh: S3 test server on $AWS_ENDPOINT_URL, bucket $WEIR_TEST_S3_BUCKET"
