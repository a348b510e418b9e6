# ---- What every cgstorm reproducer does the same way ----------------------
# Each op sets R to its result (ok, an errno name, killed) and prints
#   lane L op N <op>: R
# The errno name comes from the tool's message (the C library's strerror
# text at its end) or, for the helper, from its errno.

# T: centiseconds since boot (no fork).
now() {
	read -r T _ < /proc/uptime
	T=$(( ${T%.*} * 100 + 1${T#*.} - 100 ))
}

# Starts op $1: its start time (and, with a stall limit, a note for the
# watchdog in main).
beg() {
	read -r T0 _ < /proc/uptime
	T0=$(( ${T0%.*} * 100 + 1${T0#*.} - 100 ))
	[ -z "$STALL" ] || echo "$T0 $1" > "$RUN/busy.$L"
}

# Ends op $1 (its text $2): prints the result line.
res() {
	now
	[ -z "$STALL" ] || : > "$RUN/busy.$L"
	if [ -n "$TIMES" ]; then
		echo "lane $L op $1 $2: $R @$T0-$T"
	else
		echo "lane $L op $1 $2: $R"
	fi
}

# R from the first line of the error file $1 (a tool's message).
errof() {
	m=
	[ -s "$1" ] && read -r m < "$1"
	msg2err "$m"
}

# Runs a command with its stderr in $E; R=ok or the errno its message names.
run() {
	if "$@" 2>"$E" >/dev/null; then R=ok; else errof "$E"; fi
}

# Writes $2 to the existing file $1 in one write(2), as `echo -n`: the file
# is not created (cgroupfs would answer EACCES to O_CREAT, not ENOENT).
wr() {
	if [ ! -e "$1" ]; then R=ENOENT; return; fi
	if { echo -n "$2" > "$1"; } 2>"$E"; then R=ok; else errof "$E"; fi
}

# Tasks. A task runs under a small keeper subshell that waits for it and
# writes its exit status (shell style: 128+N when killed by signal N) to a
# file: any lane can then kill it or wait for it, and its status is never
# lost to another shell's reaping. The task's pid and that file are kept in
# $RUN/task/NAME/pid while the name is in use.

# P: the pid of task $1 (a pid no process has when there is no such task),
# PS: its status file.
pid_of() {
	P= PS=
	[ -f "$RUN/task/$1/pid" ] && read -r P PS < "$RUN/task/$1/pid"
	[ -n "$P" ] || P=$NOPID
}

# Whether process $1 runs (exists and is no zombie).
alive() {
	al=
	[ -r "/proc/$1/stat" ] && read -r al < "/proc/$1/stat" 2>/dev/null
	case ${al##*) } in ''|Z*) return 1 ;; esac
}

# Polls (no blocking opens: a blocking open of a FIFO in a background
# subshell fails with EINTR when a child exits) until file $1 has data.
# With $2, gives up (status 1) once process $2 is gone.
await() {
	aw=0
	while [ ! -s "$1" ]; do
		[ -z "${2:-}" ] || alive "$2" || { [ -s "$1" ]; return; }
		if [ "$aw" -lt 50 ]; then sleep 0.01; else sleep 0.1; fi
		aw=$((aw + 1))
	done
}

# spawn NAME CGDIR|- KIND ARGS...: starts a task that first joins the
# cgroup, then opens its file and says ok (or its errno) before it works.
spawn_task() {
	sn=$1 scg=$2
	shift 2
	# A name is in use once a spawn of it succeeded (as in cgstorm's agent).
	if [ -f "$RUN/task/$sn/pid" ]; then R=EEXIST; return; fi
	NSPAWN=$((NSPAWN + 1))
	sf="$RUN/spawn.$L.st" sp="$RUN/spawn.$L.pid" ss="$RUN/status.$L.$NSPAWN"
	: > "$sf"
	: > "$sp"
	(
		(
			exec 5>>"$sf"
			if [ "$scg" != - ]; then
				if ! { echo 0 > "$scg/cgroup.procs"; } 2>"$RUN/spawn.$L.err"; then
					errof "$RUN/spawn.$L.err"
					echo "err $R" >&5
					exit 1
				fi
			fi
			if [ "$1" = sleeper ]; then
				echo ok >&5
				exec sleep 2147483647 >/dev/null 5>&-
			fi
			exec "$H" task "$@" >&5 5>&-
		) &
		tp=$!
		exec 2>/dev/null  # no "Killed" from this shell
		echo "$tp" > "$sp"
		wait "$tp"
		echo $? > "$ss"
	) &
	kp=$!
	await "$sf" "$kp"
	await "$sp" "$kp"
	st= sn2= tp=
	read -r st sn2 < "$sf"
	read -r tp < "$sp"
	case $st in
	ok)
		mkdir -p "$RUN/task/$sn"
		echo "$tp $ss" > "$RUN/task/$sn/pid"
		R=ok
		;;
	err)
		[ -z "$tp" ] || kill -9 "$tp" 2>/dev/null
		case $sn2 in
		*[!0-9]*) R=$sn2 ;;
		?*) errname "$sn2" ;;
		*) R=EIO ;;
		esac
		;;
	*)
		# No line: the task is gone. Killed (SIGKILL: status 137) before it
		# said its setup was done, by a cgroup.kill of the cgroup it had
		# joined, the spawn is `killed`, as in cgstorm's agent.
		await "$ss" "$kp"
		sc=
		[ -s "$ss" ] && read -r sc < "$ss"
		if [ "$sc" = 137 ]; then
			R=killed
			echo "cgstorm: task $sn was killed during setup" >&2
		else
			[ -z "$tp" ] || kill -9 "$tp" 2>/dev/null
			R=EIO
			echo "cgstorm: task $sn died during setup" >&2
		fi
		;;
	esac
}

# Takes task $1's name out of use (atomically: one lane wins); false if
# it is not in use.
forget() {
	NGONE=$((NGONE + 1))
	mv "$RUN/task/$1" "$RUN/gone.$L.$NGONE" 2>/dev/null || return 1
	rm -rf "$RUN/gone.$L.$NGONE"
}

kill_task() {
	pid_of "$1"
	if [ "$P" = "$NOPID" ] || ! forget "$1"; then R=ESRCH; return; fi
	kill -9 "$P" 2>/dev/null
	await "$PS"
	R=ok
}

wait_task() {
	pid_of "$1"
	if [ "$P" = "$NOPID" ]; then R=ESRCH; return; fi
	await "$PS"
	forget "$1"
	S=
	read -r S < "$PS"
	if [ "$S" = 0 ]; then R=ok
	elif [ -z "$S" ]; then R=EIO
	elif [ "$S" -gt 128 ]; then R=killed
	else errname "$S"
	fi
}

# Barrier $1: every lane gets there (marker files, polled).
barrier() {
	: > "$RUN/b.$1.$L"
	while :; do
		bn=0
		for bl in $LANES; do [ -e "$RUN/b.$1.$bl" ] && bn=$((bn + 1)); done
		[ "$bn" -eq "$NLANES" ] && return
		sleep 0.01
	done
}

# D: the device node for `scratch N`, `pmem N` or `loop N`.
devpath() {
	D=
	case $1 in
	scratch) eval "D=\${SCRATCH$2:-}" ;;
	pmem) eval "D=\${PMEM$2:-}" ;;
	loop)
		if [ -f "$RUN/loop/$2" ]; then
			read -r D < "$RUN/loop/$2"
			# A device cleared after its last user (autoclear) is gone.
			[ -e "/sys/block/${D##*/}/loop/backing_file" ] || { rm -f "$RUN/loop/$2"; D=; }
		fi
		;;
	esac
	[ -n "$D" ] || D=$NODEV
}

# losetup N FILE SIZE: a backing file of SIZE bytes on a free loop device.
losetup_dev() {
	devpath loop "$1"
	if [ "$D" != "$NODEV" ]; then R=EBUSY; return; fi
	run truncate -s "$3" "$2"
	[ "$R" = ok ] || return
	ld=$(losetup -f 2>"$E") || { errof "$E"; return; }
	run losetup "$ld" "$2"
	[ "$R" = ok ] && echo "$ld" > "$RUN/loop/$1"
}

losetup_detach() {
	devpath loop "$1"
	if [ "$D" = "$NODEV" ]; then R=ENXIO; return; fi
	run losetup -d "$D"
	devpath loop "$1"
}

# mkfs DEV FS, with the flags cgstorm's agent uses. A mounted or otherwise
# claimed device is EBUSY (mkfs refuses it), any other failure EIO.
mkfs_dev() {
	if [ ! -e "$1" ]; then R=ENOENT; return; fi
	case $2 in
	ext4) mkfs.ext4 -q -F -b 4096 "$1" > /dev/null 2>"$E" ;;
	xfs) mkfs.xfs -q -f -m reflink=0 "$1" > /dev/null 2>"$E" ;;
	esac
	if [ $? -eq 0 ]; then R=ok; return; fi
	R=EIO
	while read -r m; do
		case $m in *mounted*|*"in use"*|*busy*|*"Resource busy"*) R=EBUSY ;; esac
	done < "$E"
	[ "$R" = EIO ] && { echo "cgstorm: mkfs.$2 $1 failed:"; cat "$E"; } >&2
}

v1_mount() {
	vmade=
	if [ ! -d "$CG1" ]; then
		mkdir -p "$CG1" 2>"$E" || { errof "$E"; return; }
		vmade=1
	fi
	run mount -t cgroup -o memory cgroup "$CG1"
	[ "$R" = ok ] || [ -z "$vmade" ] || rmdir "$CG1"
}

v1_umount() {
	run umount "$CG1"
	[ "$R" = ok ] && rmdir "$CG1" 2>/dev/null
}

# io.max of cgroup dir $1 for the device $2: "MAJ:MIN $3".
io_max() {
	mm=0:0
	[ -e "$2" ] && [ -r "/sys/class/block/${2##*/}/dev" ] && read -r mm < "/sys/class/block/${2##*/}/dev"
	wr "$1/io.max" "$mm${3:+ $3}"
}

# A request to the helper, which holds open files, mappings and pins.
hcall() {
	echo "$*" >&3
	hr= hn=
	read -r hr hn <&4 || { R=EIO; echo "cgstorm: the helper is gone" >&2; return; }
	if [ "$hr" = ok ]; then R=ok; else errname "$hn"; fi
}

# A one-shot helper command that answers ok or err N on stdout.
hrun() {
	hr= hn=
	read -r hr hn <<EOF
$("$H" "$@")
EOF
	if [ "$hr" = ok ]; then R=ok; elif [ "$hr" = err ]; then errname "$hn"; else R=EIO; fi
}

# Until $1 (centiseconds since boot): at least one pass, as cgstorm does.
past() {
	now
	[ "$T" -ge "$1" ]
}

# Waits for the lanes (pids $@). With a stall limit, a lane stuck in one
# op for STALL seconds is reported (blocked tasks dumped with sysrq w) and
# the script ends with status 4, as cgstorm's agent watchdog would.
wait_lanes() {
	status=0
	if [ -n "$STALL" ]; then
		while :; do
			sleep 1
			up=0
			for lp in "$@"; do alive "$lp" && up=1; done
			[ "$up" = 1 ] || break
			now
			for l in $LANES; do
				bt= bop=
				[ -s "$RUN/busy.$l" ] && read -r bt bop < "$RUN/busy.$l"
				if [ -n "$bt" ] && [ $((T - bt)) -gt $((STALL * 100)) ]; then
					echo "cgstorm: lane $l stuck in op $bop for more than ${STALL}s" >&2
					echo w > /proc/sysrq-trigger 2>/dev/null
					return 4
				fi
			done
		done
	fi
	for lp in "$@"; do wait "$lp" || status=1; done
	return $status
}

# The end: tasks killed, helper stopped, mounts and loop devices gone,
# the program's cgroups removed (CGSTORM_KEEP=1 leaves everything).
cleanup() {
	[ -n "${CGSTORM_KEEP:-}" ] && return
	for f in "$RUN"/task/*/pid; do
		[ -f "$f" ] && read -r p _ < "$f" && kill -9 "$p" 2>/dev/null
	done
	sleep 0.1
	[ -n "${HELPER_PID:-}" ] && kill -9 "$HELPER_PID" 2>/dev/null
	wait 2>/dev/null
	dax_idle
	for d in "$PLACES"/*; do umount -l "$d" 2>/dev/null; done
	for f in "$RUN"/loop/*; do
		[ -f "$f" ] && read -r d < "$f" && losetup -d "$d" 2>/dev/null
	done
	umount -l "$PLACES" 2>/dev/null
	for c in $CGROUPS; do rmdir "$c" 2>/dev/null; done
	umount -l "$CG1" 2>/dev/null && rmdir "$CG1" 2>/dev/null
	LOOPS_USED=$(ls "$RUN/loop" 2>/dev/null)
	rm -rf "$RUN"
}

# What cgstorm's reset checks before its unmounts (the model's eventual
# invariant, on kernels with FS_DAX): with the helper and its pins gone, no
# page of a DAX file is still referenced, so the helper's truncate of each
# file on a DAX mount (mapped, so the truncate waits for its pages to be
# idle) returns within @DAX_IDLE_S@ s. Only scripts with pins have the helper.
dax_idle() {
	[ -n "${H:-}" ] || return
	awk -v p="$PLACES/" 'index($2, p) == 1 && $4 ~ /(^|,)dax(=always)?(,|$)/ { print $2 }' /proc/mounts |
	while read -r m; do
		find "$m" -xdev -type f | while read -r f; do
			"$H" idle "$f" @DAX_IDLE_S@ 2>/dev/null
			[ $? = 142 ] || continue
			echo "cgstorm: leak: DAX pages still referenced with every pin released: $f: truncating it did not return within @DAX_IDLE_S@ s" >&2
		done
	done
}

# Then what cgstorm's reset checks (the model's eventual invariant, on
# kernels >= 5.14, which release dying cgwbs): the removed cgroups are
# freed within @DYING_S@ s while the caches are dropped. Those the idle workers
# of the program's loop devices hold (for @LOOP_HOLD_S@ s) are a legitimate hold.
eventual() {
	[ -n "${CGSTORM_KEEP:-}" ] && return
	set -- $(uname -r | tr '.-' '  ')
	[ "$1" -gt 5 ] 2>/dev/null || { [ "$1" = 5 ] && [ "$2" -ge 14 ] 2>/dev/null; } || return
	# After loop devices, the cgroups their workers hold stay for a while:
	# @LOOP_SETTLE_S@ s tell whether anything else is held (as cgstorm's reset does).
	i=0 max=@DYING_POLLS@
	[ -n "${LOOPS_USED:-}" ] && max=@LOOP_SETTLE_POLLS@
	while :; do
		dying=$(sed -n 's/^nr_dying_descendants //p' "$CG2/cgroup.stat")
		[ "${dying:-0}" = 0 ] && return
		[ "$i" -ge "$max" ] && break
		echo 3 > /proc/sys/vm/drop_caches
		sleep 0.05
		i=$((i + 1))
	done
	if [ -n "${LOOPS_USED:-}" ]; then
		echo "cgstorm: $dying removed cgroups still dying after @LOOP_SETTLE_S@ s, held by the idle workers of the loop devices the program used (they go after @LOOP_HOLD_S@ s): not a leak" >&2
	else
		echo "cgstorm: leak: removed cgroups are still dying: $dying after @DYING_S@ s" >&2
	fi
}
