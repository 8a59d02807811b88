#!/usr/bin/env bash
# The one entry point for a local Apache Kafka (KRaft, no ZooKeeper) used by the tests, the demo,
# the benches and reviewers.
#
# Usage: scripts/kafka.sh <command> [args]
#
#   install                      resolve kafka_2.13 + kafka-tools ${KAFKA_VERSION} and their runtime
#                                dependencies with Maven (testing/kafka/pom.xml) into
#                                ${KAFKA_HOME}/libs; skipped when already there. Prints
#                                KAFKA_HOME=<dir> on stdout.
#   start [--brokers N] [--security plaintext|ssl|sasl_plaintext|sasl_ssl]
#                                a fresh cluster on free loopback ports: N=1 (default) is one
#                                combined broker+controller; N=2..5 are N brokers of which the first
#                                min(N,3) also form the controller quorum. Waits until Metadata
#                                lists all N brokers, then prints on stdout
#                                  KAFKA_BOOTSTRAP=host:port[,host:port...]
#                                and with --security other than plaintext also
#                                  KAFKA_PLAINTEXT_BOOTSTRAP=host:port[,...]   (for tools)
#                                  KAFKA_CLIENT_CONFIG=/path/client.properties (Java client keys)
#                                A cluster already running in the state folder is not restarted:
#                                its lines are printed again.
#   status                       one line per broker: `broker ID PID HOST:PORT` (PID `-` if down)
#   create-topic NAME PARTITIONS [REPLICATION]
#                                create a topic (an existing one is not an error); waits until
#                                every partition has a leader
#   kill-broker ID               SIGKILL broker ID
#   pause-broker ID              SIGSTOP broker ID (a zombie: sockets open, nothing answered)
#   resume-broker ID             SIGCONT broker ID
#   stop-broker ID               stop broker ID gracefully (SIGTERM: controlled shutdown moves its
#                                leaders away first; SIGKILL after ${KAFKA_STOP_TIMEOUT:-20} s)
#   start-broker ID              start broker ID again with its data (after kill/stop)
#   run-class CLASS [ARGS...]    run a Kafka tool class (as kafka-run-class.sh does), e.g.
#                                org.apache.kafka.tools.LeaderElectionCommand --bootstrap-server ..
#   stop [--now]                 stop every process this script started for the state folder, by
#                                pid (SIGTERM, SIGKILL after ${KAFKA_STOP_TIMEOUT:-20} s; --now:
#                                SIGKILL at once). Data stays until the next `start`.
#
# Environment:
#   KAFKA_VERSION       Kafka version (default 4.4.0; must match testing/kafka/pom.xml's default
#                       or be passed to Maven with -Dkafka.version)
#   KAFKA_HOME          install folder (default $HOME/.cache/actix-kafka/kafka-$KAFKA_VERSION)
#   KAFKA_STATE_DIR     cluster state: configs, data, logs, pids (default ${TMPDIR:-/tmp}/actix-kafka-cluster).
#                       Several clusters can run side by side with different state folders.
#   KAFKA_HEAP_OPTS     JVM heap per broker (default -Xms256m -Xmx768m)
#   KAFKA_START_TIMEOUT seconds to wait for the cluster (default 60)
#   KAFKA_BROKER_PROPS  extra server.properties lines (separated by newlines or ';'), e.g.
#                       "connections.max.reauth.ms=10000;log.retention.ms=600000"
#   JAVA_HOME           Java 17 or newer (else `java` on PATH)
#
# Human-readable messages go to stderr; only the machine-readable lines go to stdout. Every error
# is one line naming its cause (and the log file where there is one), and leaves nothing running.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "${SCRIPT_DIR}/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_HOME="${KAFKA_HOME:-${HOME:?HOME is not set}/.cache/actix-kafka/kafka-${KAFKA_VERSION}}"
LIBS="${KAFKA_HOME}/libs"
STATE_DIR="${KAFKA_STATE_DIR:-${TMPDIR:-/tmp}/actix-kafka-cluster}"
START_TIMEOUT_SECS="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT_SECS="${KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
HOST=127.0.0.1
# Users known to every SASL mechanism of a secured cluster (PLAIN via JAAS, SCRAM via the
# metadata log, written at format time). Test credentials only.
SASL_USER=alice
SASL_PASSWORD=alice-secret
ADMIN_USER=admin
ADMIN_PASSWORD=admin-secret

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
}

# --- java and install --------------------------------------------------------------------------

java_bin() {
    local j
    if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
        j="${JAVA_HOME}/bin/java"
    else
        j="$(command -v java 2>/dev/null)" || die "java not found: install Java 17 or newer, or set JAVA_HOME"
    fi
    local v
    v="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | head -n 1)"
    [[ "$v" =~ ^[0-9]+$ ]] && ((v >= 17)) || die "${j} is Java ${v:-unknown}; Kafka ${KAFKA_VERSION} needs Java 17 or newer (set JAVA_HOME)"
    echo "$j"
}

installed_ok() {
    [[ -f "${LIBS}/kafka_2.13-${KAFKA_VERSION}.jar" && -f "${LIBS}/kafka-tools-${KAFKA_VERSION}.jar" \
        && -f "${KAFKA_HOME}/.complete" ]]
}

cmd_install() {
    if installed_ok; then
        log "Apache Kafka ${KAFKA_VERSION} already installed in ${KAFKA_HOME}"
        echo "KAFKA_HOME=${KAFKA_HOME}"
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (Maven resolves Kafka's jars; install maven)"
    java_bin >/dev/null
    mkdir -p "$KAFKA_HOME"
    exec 9>"${KAFKA_HOME}/.install.lock"
    if ! flock -n 9; then
        log "another install into ${KAFKA_HOME} is running; waiting for it"
        flock 9
    fi
    if ! installed_ok; then
        log "resolving Apache Kafka ${KAFKA_VERSION} with Maven into ${LIBS}"
        local started=$SECONDS mlog="${KAFKA_HOME}/install.log"
        rm -rf "${LIBS}.tmp"
        if ! mvn -B -q -f "${REPO_DIR}/testing/kafka/pom.xml" -Dkafka.version="${KAFKA_VERSION}" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="${LIBS}.tmp" \
            >"$mlog" 2>&1; then
            rm -rf "${LIBS}.tmp"
            die "Maven could not resolve Apache Kafka ${KAFKA_VERSION}: $(grep -m1 -E 'ERROR|Could not' "$mlog" || tail -n 1 "$mlog") (log ${mlog})"
        fi
        rm -rf "$LIBS" "${KAFKA_HOME}/.complete"
        mv "${LIBS}.tmp" "$LIBS"
        [[ -f "${LIBS}/kafka_2.13-${KAFKA_VERSION}.jar" ]] && touch "${KAFKA_HOME}/.complete"
        installed_ok || die "Maven finished but ${LIBS} lacks kafka_2.13-${KAFKA_VERSION}.jar (log ${mlog})"
        log "installed Apache Kafka ${KAFKA_VERSION} ($(ls "$LIBS" | wc -l) jars) in $((SECONDS - started)) s"
    fi
    exec 9>&-
    echo "KAFKA_HOME=${KAFKA_HOME}"
}

ensure_installed() { installed_ok || cmd_install >/dev/null; }

# --- cluster layout ----------------------------------------------------------------------------

# cluster.env holds: NODES SECURITY CLUSTER_ID and per node PORT_i (client listener),
# PLAIN_PORT_i (tool listener, = PORT_i for plaintext), CTRL_PORT_i (controller, 0 if none).
env_file() { echo "${STATE_DIR}/cluster.env"; }
node_dir() { echo "${STATE_DIR}/broker-$1"; }
pid_file() { echo "$(node_dir "$1")/kafka.pid"; }
log_file() { echo "$(node_dir "$1")/kafka.log"; }

load_env() {
    [[ -f "$(env_file)" ]] || return 1
    # shellcheck disable=SC1090
    source "$(env_file)"
}

port_open() { (exec 3<>"/dev/tcp/${HOST}/$1") 2>/dev/null; }

# Prints N free loopback ports (bound and released by the kernel; all distinct).
free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
n = int(sys.argv[1]); socks = []
for _ in range(n):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks: s.close()
PY
}

# pid of node $1 if it is alive and really is our broker for this state folder.
running_pid() {
    local pf pid cmdline
    pf="$(pid_file "$1")"
    [[ -f "$pf" ]] || return 1
    pid="$(cat "$pf" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
        [[ "$cmdline" == *"kafka.Kafka $(node_dir "$1")/server.properties"* ]] || return 1
    fi
    echo "$pid"
}

# Whether process $1 has exited: gone, or a zombie (its sockets and files are closed by then). Not
# `running_pid`: a process being killed loses its command line (its memory) before its files,
# so a listening port can still be open when `running_pid` already says "not running".
pid_gone() {
    kill -0 "$1" 2>/dev/null || return 0
    local state
    state="$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" == Z || "$state" == X ]] || return 1
    # A zombie leader's other threads may still be exiting, holding the shared file table.
    local tasks=("/proc/$1/task/"*)
    ((${#tasks[@]} <= 1))
}

nodes() { seq 1 "$NODES"; }
var() { local n="$1"; echo "${!n}"; }

bootstrap_of() { # $1 = PORT or PLAIN_PORT
    local i out=""
    for i in $(nodes); do out+="${out:+,}${HOST}:$(var "${1}_${i}")"; done
    echo "$out"
}

# --- TLS material and client config --------------------------------------------------------------

make_certs() {
    local d="${STATE_DIR}/tls"
    mkdir -p "$d"
    command -v openssl >/dev/null 2>&1 || die "openssl not found on PATH (needed to generate test certificates)"
    (
        cd "$d"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=actix-kafka test CA" \
            -keyout ca.key -out ca.pem -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign"
        for who in broker client; do
            local cn=localhost san="subjectAltName=DNS:localhost,IP:127.0.0.1"
            [[ $who == client ]] && cn="$SASL_USER" san="subjectAltName=DNS:${SASL_USER}"
            openssl req -newkey rsa:2048 -nodes -subj "/CN=${cn}" -keyout "${who}.key" -out "${who}.csr"
            printf '%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"${who}.ext"
            openssl x509 -req -in "${who}.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile "${who}.ext" -out "${who}.pem"
            # PKCS#8 key, unencrypted, then the certificate chain: a PEM "keystore" (KIP-651).
            openssl pkcs8 -topk8 -nocrypt -in "${who}.key" -out "${who}.pk8"
            cat "${who}.pk8" "${who}.pem" ca.pem >"${who}-keystore.pem"
        done
        openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker \
            -passout pass:broker-secret -out broker.p12
    ) >"${d}/openssl.log" 2>&1 || die "could not generate test certificates (log ${d}/openssl.log)"
}

write_client_config() {
    local f="${STATE_DIR}/client.properties" proto="$1" tls="${STATE_DIR}/tls"
    {
        echo "# Client properties (Java names) for the ${proto} listener of this test cluster."
        echo "bootstrap.servers=$(bootstrap_of PORT)"
        echo "security.protocol=${proto^^}"
        case "$proto" in
            ssl | sasl_ssl)
                echo "ssl.truststore.type=PEM"
                echo "ssl.truststore.location=${tls}/ca.pem"
                ;;
        esac
        case "$proto" in
            ssl)
                echo "# mTLS (the listener requests, and verifies, a client certificate when sent):"
                echo "ssl.keystore.type=PEM"
                echo "ssl.keystore.location=${tls}/client-keystore.pem"
                ;;
            sasl_plaintext)
                echo "sasl.mechanism=PLAIN"
                echo "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${SASL_USER}\" password=\"${SASL_PASSWORD}\";"
                ;;
            sasl_ssl)
                echo "sasl.mechanism=SCRAM-SHA-512"
                echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"${SASL_USER}\" password=\"${SASL_PASSWORD}\";"
                ;;
        esac
        case "$proto" in
            sasl_*)
                echo "# The listener accepts PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 (user ${SASL_USER}, password"
                echo "# ${SASL_PASSWORD}) and OAUTHBEARER with unsecured JWS tokens (any sub)."
                ;;
        esac
    } >"$f"
    echo "$f"
}

# --- server.properties -----------------------------------------------------------------------------

write_server_properties() {
    local id=$1 d voters="" i rf isr ctrl_nodes listeners adv protomap
    d="$(node_dir "$id")"
    mkdir -p "$d/data"
    ctrl_nodes=$((NODES < 3 ? NODES : 3))
    for ((i = 1; i <= ctrl_nodes; i++)); do voters+="${voters:+,}${i}@${HOST}:$(var "CTRL_PORT_${i}")"; done
    rf=$((NODES < 3 ? NODES : 3))
    isr=$((NODES >= 3 ? 2 : 1))
    local port plain ctrl
    port="$(var "PORT_${id}")" plain="$(var "PLAIN_PORT_${id}")" ctrl="$(var "CTRL_PORT_${id}")"
    if [[ "$SECURITY" == plaintext ]]; then
        listeners="PLAINTEXT://${HOST}:${port}"
        adv="PLAINTEXT://${HOST}:${port}"
        protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        inter=PLAINTEXT
    else
        listeners="CLIENT://${HOST}:${port},PLAINTEXT://${HOST}:${plain}"
        adv="$listeners"
        protomap="CLIENT:${SECURITY^^},PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        inter=PLAINTEXT
    fi
    local roles=broker
    if ((id <= ctrl_nodes)); then
        roles="broker,controller"
        listeners+=",CONTROLLER://${HOST}:${ctrl}"
    fi
    {
        echo "# Written by scripts/kafka.sh for node ${id} of a ${NODES}-node test cluster (${SECURITY})."
        echo "process.roles=${roles}"
        echo "node.id=${id}"
        echo "controller.quorum.voters=${voters}"
        echo "controller.listener.names=CONTROLLER"
        echo "listeners=${listeners}"
        echo "advertised.listeners=${adv}"
        echo "listener.security.protocol.map=${protomap}"
        echo "inter.broker.listener.name=${inter}"
        echo "log.dirs=${d}/data"
        echo "auto.create.topics.enable=false"
        echo "num.partitions=1"
        echo "default.replication.factor=${rf}"
        echo "min.insync.replicas=${isr}"
        echo "offsets.topic.replication.factor=${rf}"
        echo "offsets.topic.num.partitions=6"
        echo "transaction.state.log.replication.factor=${rf}"
        echo "transaction.state.log.min.isr=${isr}"
        echo "transaction.state.log.num.partitions=6"
        echo "share.coordinator.state.topic.replication.factor=${rf}"
        echo "share.coordinator.state.topic.min.isr=${isr}"
        echo "group.initial.rebalance.delay.ms=0"
        # 2 cores: few threads; small segments so restarts recover quickly.
        echo "num.network.threads=2"
        echo "num.io.threads=4"
        echo "num.recovery.threads.per.data.dir=2"
        echo "background.threads=4"
        echo "log.segment.bytes=67108864"
        echo "log.retention.hours=6"
        echo "log.cleaner.enable=true"
        echo "log.cleaner.threads=1"
        echo "log.cleaner.dedupe.buffer.size=8388608"
        echo "unclean.leader.election.enable=false"
        echo "delete.topic.enable=true"
        # So the tests see a killed broker leave the ISR and come back within seconds.
        echo "broker.session.timeout.ms=9000"
        echo "broker.heartbeat.interval.ms=1000"
        echo "replica.lag.time.max.ms=10000"
        echo "controlled.shutdown.enable=true"
        if [[ "$SECURITY" == ssl || "$SECURITY" == sasl_ssl ]]; then
            local tls="${STATE_DIR}/tls"
            echo "listener.name.client.ssl.keystore.type=PKCS12"
            echo "listener.name.client.ssl.keystore.location=${tls}/broker.p12"
            echo "listener.name.client.ssl.keystore.password=broker-secret"
            echo "listener.name.client.ssl.key.password=broker-secret"
            echo "listener.name.client.ssl.truststore.type=PEM"
            echo "listener.name.client.ssl.truststore.location=${tls}/ca.pem"
            echo "listener.name.client.ssl.client.auth=requested"
            echo "listener.name.client.ssl.enabled.protocols=TLSv1.2,TLSv1.3"
            echo "listener.name.client.ssl.endpoint.identification.algorithm=https"
        fi
        if [[ "$SECURITY" == sasl_* ]]; then
            echo "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"
            echo "listener.name.client.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER"
            echo "listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"${ADMIN_USER}\" password=\"${ADMIN_PASSWORD}\" user_${ADMIN_USER}=\"${ADMIN_PASSWORD}\" user_${SASL_USER}=\"${SASL_PASSWORD}\";"
            echo "listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            echo "listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;"
            echo "listener.name.client.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"${ADMIN_USER}\";"
            echo "listener.name.client.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.internals.unsecured.OAuthBearerUnsecuredValidatorCallbackHandler"
        fi
        if [[ -n "${KAFKA_BROKER_PROPS:-}" ]]; then
            echo "# KAFKA_BROKER_PROPS"
            tr ';' '\n' <<<"$KAFKA_BROKER_PROPS"
        fi
    } >"${d}/server.properties"
    cat >"${d}/log4j2.properties" <<EOF
status = error
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${d}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF
}

format_storage() {
    local id=$1 java d args=()
    java="$(java_bin)"
    d="$(node_dir "$id")"
    if [[ "$SECURITY" == sasl_* ]]; then
        local m
        for m in SCRAM-SHA-256 SCRAM-SHA-512; do
            args+=(--add-scram "${m}=[name=${SASL_USER},password=${SASL_PASSWORD}]")
            args+=(--add-scram "${m}=[name=${ADMIN_USER},password=${ADMIN_PASSWORD}]")
        done
    fi
    "$java" -Xmx256m -Dlog4j2.configurationFile="${d}/log4j2.properties" -cp "${LIBS}/*" \
        kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "${d}/server.properties" \
        --ignore-formatted "${args[@]}" >"${d}/format.log" 2>&1 \
        || die "formatting storage of broker ${id} failed: $(tail -n 1 "${d}/format.log") (log ${d}/format.log)"
}

launch_node() {
    local id=$1 java d pid
    java="$(java_bin)"
    d="$(node_dir "$id")"
    local p
    for p in "$(var "PORT_${id}")" "$(var "PLAIN_PORT_${id}")" "$(var "CTRL_PORT_${id}")"; do
        [[ "$p" == 0 ]] && continue
        port_open "$p" && die "port ${p} of broker ${id} is already in use by another process"
    done
    # setsid: own session, so a Ctrl-C aimed at the caller does not reach the broker; the
    # caller stops it by pid with `stop`.
    # shellcheck disable=SC2086
    setsid "$java" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="${d}/log4j2.properties" \
        -Dkafka.logs.dir="$d" -cp "${LIBS}/*" kafka.Kafka "${d}/server.properties" \
        </dev/null >>"$(log_file "$id")" 2>&1 &
    pid=$!
    echo "$pid" >"$(pid_file "$id")"
}

# Kafka Metadata v1 over the tool listener, for readiness checks (no JVM start-up per probe).
#   metadata_probe PORT            prints the node ids of the brokers it lists
#   metadata_probe PORT TOPIC      prints "PARTITIONS WITH_LEADER" for TOPIC (nothing on error)
metadata_probe() {
    python3 - "$HOST" "$@" <<'PY' 2>/dev/null
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
topic = sys.argv[3].encode() if len(sys.argv) > 3 else None
cid = b"kafka.sh"
topics = struct.pack(">i", 0) if topic is None else struct.pack(">ih", 1, len(topic)) + topic
body = struct.pack(">hhih", 3, 1, 7, len(cid)) + cid + topics
s = socket.create_connection((host, port), timeout=2)
s.settimeout(2)
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise EOFError
        b += c
    return b
size = struct.unpack(">i", read(4))[0]
if size <= 0 or size > 1 << 22: sys.exit(1)
buf = read(size)
off = 0
def take(fmt):
    global off
    v = struct.unpack_from(fmt, buf, off); off += struct.calcsize(fmt); return v
def string():
    global off
    (n,) = take(">h"); v = buf[off:off + max(n, 0)]; off += max(n, 0); return v
corr, count = take(">ii")
if corr != 7 or not 0 <= count <= 1000: sys.exit(1)
ids = []
for _ in range(count):
    (node,) = take(">i"); string(); take(">i"); string(); ids.append(node)
if topic is None:
    print(" ".join(str(i) for i in sorted(ids))); sys.exit(0)
take(">i")  # controller id
(tcount,) = take(">i")
for _ in range(tcount):
    (err,) = take(">h"); name = string(); take(">b")
    (pcount,) = take(">i")
    led = 0
    for _ in range(pcount):
        perr, idx, leader = take(">hii")
        (n,) = take(">i"); off += 4 * n
        (n,) = take(">i"); off += 4 * n
        led += perr == 0 and leader >= 0
    if name == topic and err == 0:
        print(pcount, led)
PY
}

# True while process $1 exists and is not a zombie. (Right after launch its cmdline may still be
# the forked shell's, before `exec java`: running_pid would not recognise it yet.)
pid_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local st
    st="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    st="${st##*) }"
    [[ "${st:0:1}" != Z ]]
}

# Waits until node $1 answers Metadata listing $2 brokers (or any, when $2 is empty).
wait_node_ready() {
    local id=$1 want=${2:-} deadline got pid
    deadline=$((SECONDS + START_TIMEOUT_SECS))
    pid="$(cat "$(pid_file "$id")" 2>/dev/null || true)"
    while ((SECONDS < deadline)); do
        if ! [[ "$pid" =~ ^[0-9]+$ ]] || ! pid_alive "$pid"; then
            return 2
        fi
        got="$(metadata_probe "$(var "PLAIN_PORT_${id}")" || true)"
        if [[ -n "$got" ]]; then
            if [[ -z "$want" ]] || (($(wc -w <<<"$got") >= want)); then
                return 0
            fi
        fi
        sleep 0.5
    done
    return 1
}

fail_start() { # $1 = node id, $2 = what happened
    local lf
    lf="$(log_file "$1")"
    local cause
    cause="$(grep -m1 -E 'ERROR|Exception' "$(node_dir "$1")/server.log" "$lf" 2>/dev/null | cut -c1-300 || true)"
    stop_all >/dev/null 2>&1 || true
    die "broker $1 $2${cause:+: ${cause}} (logs ${lf}, $(node_dir "$1")/server.log)"
}

print_lines() {
    echo "KAFKA_BOOTSTRAP=$(bootstrap_of PORT)"
    if [[ "$SECURITY" != plaintext ]]; then
        echo "KAFKA_PLAINTEXT_BOOTSTRAP=$(bootstrap_of PLAIN_PORT)"
        echo "KAFKA_CLIENT_CONFIG=${STATE_DIR}/client.properties"
    fi
}

cmd_start() {
    local n=1 sec=plaintext
    while (($#)); do
        case "$1" in
            --brokers) n="${2:-}"; shift 2 || die "--brokers needs a number" ;;
            --brokers=*) n="${1#*=}"; shift ;;
            --security) sec="${2:-}"; shift 2 || die "--security needs a value" ;;
            --security=*) sec="${1#*=}"; shift ;;
            *) die "unknown option for start: $1" ;;
        esac
    done
    [[ "$n" =~ ^[1-5]$ ]] || die "--brokers must be 1..5 (got '${n}')"
    sec="${sec,,}"
    case "$sec" in plaintext | ssl | sasl_plaintext | sasl_ssl) ;; *) die "--security must be plaintext, ssl, sasl_plaintext or sasl_ssl (got '${sec}')" ;; esac
    command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH (used to pick free ports and probe Metadata)"
    ensure_installed
    java_bin >/dev/null

    if load_env; then
        local i up=0
        for i in $(nodes); do running_pid "$i" >/dev/null && up=$((up + 1)); done
        if ((up > 0)); then
            if ((up == NODES)) && [[ "$NODES" == "$n" && "$SECURITY" == "$sec" ]]; then
                log "a ${NODES}-broker ${SECURITY} cluster is already running in ${STATE_DIR}"
                print_lines
                return 0
            fi
            die "another cluster (${up}/${NODES} brokers up, ${SECURITY}) runs in ${STATE_DIR}: run '$0 stop' first or set KAFKA_STATE_DIR"
        fi
    fi

    rm -rf "$STATE_DIR"
    mkdir -p "$STATE_DIR"
    NODES=$n SECURITY=$sec
    CLUSTER_ID="$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    local ports i k=0
    read -r -a ports <<<"$(free_ports $((n * 3)))"
    {
        echo "NODES=${n}"
        echo "SECURITY=${sec}"
        echo "CLUSTER_ID=${CLUSTER_ID}"
        for i in $(seq 1 "$n"); do
            local p=${ports[k]} pp=${ports[k + 1]} cp=${ports[k + 2]}
            k=$((k + 3))
            [[ "$sec" == plaintext ]] && pp=$p
            ((i <= 3)) || cp=0
            echo "PORT_${i}=${p}"
            echo "PLAIN_PORT_${i}=${pp}"
            echo "CTRL_PORT_${i}=${cp}"
        done
    } >"$(env_file)"
    load_env
    [[ "$sec" == ssl || "$sec" == sasl_ssl ]] && make_certs
    for i in $(nodes); do
        write_server_properties "$i"
        format_storage "$i"
    done
    for i in $(nodes); do launch_node "$i"; done
    local rc
    for i in $(nodes); do
        rc=0
        wait_node_ready "$i" "$NODES" || rc=$?
        case $rc in
            0) ;;
            2) fail_start "$i" "exited during startup" ;;
            *) fail_start "$i" "did not list ${NODES} brokers within ${START_TIMEOUT_SECS} s" ;;
        esac
    done
    [[ "$sec" != plaintext ]] && write_client_config "$sec" >/dev/null
    log "${NODES}-broker ${SECURITY} cluster up in ${STATE_DIR} (Kafka ${KAFKA_VERSION})"
    print_lines
}

need_cluster() { load_env || die "no cluster in ${STATE_DIR} (run '$0 start')"; }

need_id() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= NODES)) || die "broker id must be 1..${NODES} (got '${1:-}')"
}

cmd_status() {
    need_cluster
    local i pid
    for i in $(nodes); do
        pid="$(running_pid "$i" || echo -)"
        echo "broker ${i} ${pid} ${HOST}:$(var "PORT_${i}")"
    done
}

signal_broker() { # $1 = signal, $2 = id
    need_cluster
    need_id "$2"
    local pid
    pid="$(running_pid "$2")" || die "broker $2 is not running"
    kill "-$1" "$pid"
    if [[ "$1" == KILL ]]; then
        # SIGKILL is delivered asynchronously: return once the process is really gone.
        local t
        for ((t = 0; t < 200; t++)); do
            pid_gone "$pid" && break
            sleep 0.05
        done
        pid_gone "$pid" || die "broker $2 (pid ${pid}) still runs 10 s after SIGKILL"
        rm -f "$(pid_file "$2")"
    fi
    log "sent SIG$1 to broker $2 (pid ${pid})"
}

cmd_start_broker() {
    need_cluster
    need_id "${1:-}"
    local id=$1 pid rc=0
    if pid="$(running_pid "$id")"; then
        log "broker ${id} is already running (pid ${pid})"
        return 0
    fi
    ensure_installed
    launch_node "$id"
    wait_node_ready "$id" || rc=$?
    case $rc in
        0) log "broker ${id} running again (pid $(cat "$(pid_file "$id")"))" ;;
        2) die "broker ${id} exited during startup (log $(log_file "$id"))" ;;
        *) die "broker ${id} did not answer Metadata within ${START_TIMEOUT_SECS} s (log $(log_file "$id"))" ;;
    esac
}

stop_node() { # $1 = id, $2 = signal
    local id=$1 pid
    pid="$(running_pid "$id")" || { rm -f "$(pid_file "$id")"; return 0; }
    kill -CONT "$pid" 2>/dev/null || true # a paused broker cannot handle SIGTERM
    kill "-$2" "$pid" 2>/dev/null || true
    echo "$pid"
}

stop_all() { # $1 = TERM (default) or KILL
    local i pid pids=() t sig=${1:-TERM}
    for i in $(nodes); do
        pid="$(stop_node "$i" "$sig")" && [[ -n "$pid" ]] && pids+=("$pid")
    done
    for ((t = 0; t < STOP_TIMEOUT_SECS * 5; t++)); do
        local alive=0
        for pid in "${pids[@]}"; do pid_gone "$pid" || alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do
        if ! pid_gone "$pid"; then
            log "pid ${pid} ignored SIGTERM for ${STOP_TIMEOUT_SECS} s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    for i in $(nodes); do rm -f "$(pid_file "$i")"; done
    log "stopped ${#pids[@]} broker(s) of ${STATE_DIR}"
}

cmd_stop_broker() {
    need_cluster
    need_id "${1:-}"
    local id=$1 pid t
    pid="$(running_pid "$id")" || { log "broker ${id} is not running"; return 0; }
    stop_node "$id" TERM >/dev/null
    for ((t = 0; t < STOP_TIMEOUT_SECS * 5; t++)); do
        pid_gone "$pid" && break
        sleep 0.2
    done
    if ! pid_gone "$pid"; then
        log "broker ${id} ignored SIGTERM for ${STOP_TIMEOUT_SECS} s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$(pid_file "$id")"
    log "stopped broker ${id} (pid ${pid})"
}

cmd_stop() {
    local sig=TERM
    [[ "${1:-}" == --now ]] && sig=KILL
    [[ -z "${1:-}" || "$1" == --now ]] || die "usage: $0 stop [--now]"
    load_env || { log "no cluster in ${STATE_DIR}"; return 0; }
    stop_all "$sig"
}

cmd_create_topic() {
    local name="${1:-}" partitions="${2:-}" rf="${3:-}" java out total=0 led=0
    [[ -n "$name" && "$partitions" =~ ^[0-9]+$ ]] || die "usage: $0 create-topic NAME PARTITIONS [REPLICATION]"
    need_cluster
    [[ -n "$rf" ]] || rf=$((NODES < 3 ? NODES : 3))
    java="$(java_bin)"
    if ! out="$("$java" -Xmx256m -Dlog4j2.level=WARN -cp "${LIBS}/*" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$(bootstrap_of PLAIN_PORT)" --create --if-not-exists --topic "$name" \
        --partitions "$partitions" --replication-factor "$rf" 2>&1)"; then
        die "could not create topic ${name}: $(grep -m1 -E 'Error|Exception' <<<"$out" | cut -c1-300)"
    fi
    local deadline=$((SECONDS + START_TIMEOUT_SECS)) got="" i
    while ((SECONDS < deadline)); do
        for i in $(nodes); do
            running_pid "$i" >/dev/null || continue
            got="$(metadata_probe "$(var "PLAIN_PORT_${i}")" "$name" || true)"
            break
        done
        read -r total led <<<"${got:-0 0}"
        ((total > 0 && total == led)) && break
        sleep 0.3
    done
    ((total > 0 && total == led)) || die "topic ${name}: ${led:-0}/${total:-0} partitions have a leader after ${START_TIMEOUT_SECS} s"
    log "topic ${name}: ${total} partitions, replication ${rf}, all with a leader"
}

cmd_run_class() {
    [[ -n "${1:-}" ]] || die "usage: $0 run-class CLASS [ARGS...]"
    ensure_installed
    local java
    java="$(java_bin)"
    exec "$java" -Xmx256m -Dlog4j2.level=WARN -cp "${LIBS}/*" "$@"
}

main() {
    local cmd="${1:-}"
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
        install) cmd_install "$@" ;;
        start) cmd_start "$@" ;;
        status) cmd_status "$@" ;;
        create-topic) cmd_create_topic "$@" ;;
        kill-broker) signal_broker KILL "$@" ;;
        pause-broker) signal_broker STOP "$@" ;;
        resume-broker) signal_broker CONT "$@" ;;
        start-broker) cmd_start_broker "$@" ;;
        stop-broker) cmd_stop_broker "$@" ;;
        run-class) cmd_run_class "$@" ;;
        stop) cmd_stop "$@" ;;
        -h | --help | help) usage ;;
        *) usage; die "unknown command: ${cmd:-<none>}" ;;
    esac
}

main "$@"
