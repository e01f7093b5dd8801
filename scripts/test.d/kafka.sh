# Kafka-protocol broker for the kafka connector's tests: tansu (a Kafka-compatible
# broker in Rust, in-memory storage), installed once into $HOME/.cache/weir-tansu
# (≈ 8 min; its own target dir, so it never waits on the workspace's), started on a
# free local port. Exports WEIR_TEST_KAFKA=127.0.0.1:PORT for
# runtime/connectors/tests/kafka.rs and runtime/sql/tests/kafka.rs.
# Sourced by ./test.sh (which provides `pids`); a failure only skips those tests.

kafka_root="$HOME/.cache/weir-tansu"
kafka_bin="$kafka_root/bin/tansu"
if [ ! -x "$kafka_bin" ]; then
    echo "kafka: installing tansu into $kafka_root (once)"
    CARGO_TARGET_DIR="$HOME/.cache/weir-tansu-build" cargo install tansu --locked --features dynostore --root "$kafka_root" >"$HOME/.cache/weir-tansu-install.log" 2>&1 \
        || echo "kafka: installing tansu failed (see $HOME/.cache/weir-tansu-install.log); the Kafka tests will skip"
fi
if [ -x "$kafka_bin" ]; then
    kafka_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    kafka_log="${TMPDIR:-/tmp}/weir-tansu-$kafka_port.log"
    "$kafka_bin" broker --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/ >"$kafka_log" 2>&1 &
    kafka_pid=$!
    pids+=("$kafka_pid")
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $kafka_port), 0.2)" 2>/dev/null; then
            export WEIR_TEST_KAFKA="127.0.0.1:$kafka_port"
            break
        fi
        sleep 0.1
    done
    if [ -n "${WEIR_TEST_KAFKA:-}" ]; then
        echo "kafka: tansu on $WEIR_TEST_KAFKA (pid $kafka_pid, log $kafka_log)"
    else
        echo "kafka: tansu did not start (see $kafka_log); the Kafka tests will skip"
    fi
fi
