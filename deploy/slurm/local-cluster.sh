#!/bin/bash
# A single-node Slurm cluster on this machine, for trying the night out and
# for CI: munge, slurmctld and slurmd with their state, logs and config in
# DIR. Debian packages: munge slurmctld slurmd slurm-client.
#
#   deploy/slurm/local-cluster.sh start DIR   # then: export SLURM_CONF=DIR/slurm.conf
#   deploy/slurm/local-cluster.sh stop DIR
#
# Exit 0 up (or stopped), 1 when a daemon would not start (its log is shown).
set -uo pipefail
cmd=${1:?start or stop} dir=$(realpath -m "${2:?DIR}")
host=$(hostname -s)

stop() {
    local pids=()
    for d in slurmd slurmctld munged; do
        [[ -f $dir/$d.pid ]] && pids+=("$(cat "$dir/$d.pid")")
    done
    ((${#pids[@]})) || return 0
    kill "${pids[@]}" 2>/dev/null
    for _ in $(seq 50); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null
    return 0
}

case $cmd in
stop) stop; exit 0 ;;
start) ;;
*) echo "local-cluster.sh: start or stop" >&2; exit 2 ;;
esac

mkdir -p "$dir/state" "$dir/spool"
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null
    chown munge: /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
# munged runs as munge, which may not reach DIR: its files go to /run/munge.
mkdir -p /run/munge && chown munge: /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/cgstorm-munged.pid \
        --log-file=/run/munge/cgstorm-munged.log || { cat /run/munge/cgstorm-munged.log >&2; exit 1; }
    cp /run/munge/cgstorm-munged.pid "$dir/munged.pid"
fi

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat >"$dir/slurm.conf" <<CONF
ClusterName=cgstorm
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=night Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF" || { cat "$dir/slurmctld.log" >&2; exit 1; }
slurmd -f "$SLURM_CONF" || { cat "$dir/slurmd.log" >&2; stop; exit 1; }
for _ in $(seq 50); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        echo "local-cluster: up ($host, $cpus CPUs): export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.2
done
echo "local-cluster: the node did not come up:" >&2
sinfo >&2; tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2
stop
exit 1
