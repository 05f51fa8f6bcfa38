#!/usr/bin/env bash
# Host settings for ilp-router: check them, or apply them.
#
#   tuning/host.sh --check               report every knob; changes nothing; any user
#   tuning/host.sh --apply [--persist]   as root: raise the sysctls of tuning/sysctl.conf,
#                                        set the CPU frequency governor to performance
#
# What each knob does, why, how to see it took and how to undo it: tuning/README.md.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
readonly here
readonly conf="$here/sysctl.conf"
readonly persist_path=/etc/sysctl.d/90-ilp-router.conf
# glommio registers a 10 MiB I/O buffer with each of its three io_uring rings per core.
readonly memlock_per_cpu_kib=32768
# limits.links_max default: sockets per core, plus room for everything else.
readonly links_per_cpu=4096
readonly fd_margin=1024
# Oldest kernel glommio supports.
readonly kernel_min_major=5 kernel_min_minor=8

usage() {
	cat <<'EOF'
usage: tuning/host.sh --check
       tuning/host.sh --apply [--persist]

  --check     print each host knob with its current and recommended value and OK, CHANGE
              or n/a (not present or not readable here), then CPU and IRQ advice.
              Changes nothing; works as any user and inside containers.
  --apply     as root: raise each sysctl of tuning/sysctl.conf that is below its value
              (a larger value is kept) and set the CPU frequency governor to performance;
              report what could not be set. Lasts until reboot.
  --persist   with --apply: also copy tuning/sysctl.conf to /etc/sysctl.d/90-ilp-router.conf
              so the sysctls are set at every boot.
  -h, --help  this text.

Exit status: 0 when the run completed (--apply lists anything it could not set),
1 when --apply is not run as root or --persist cannot write its file, 2 on usage errors.
EOF
}

usage_error() {
	printf 'host.sh: %s\n\n' "$1" >&2
	usage >&2
	exit 2
}

# ---- reading -------------------------------------------------------------------------------

# Prints the first line of file $1 with each run of blanks made one space; fails when the
# file is missing or unreadable.
read_value() {
	local line=""
	{ IFS= read -r line || [[ -n $line ]]; } 2>/dev/null <"$1" || return 1
	local -a words
	read -ra words <<<"$line"
	printf '%s' "${words[*]}"
}

sysctl_path() {
	printf '/proc/sys/%s' "${1//./\/}"
}

# Expands a CPU list like "0-3,8" to "0 1 2 3 8".
expand_list() {
	local part first last cpu out=()
	local -a parts
	IFS=, read -ra parts <<<"$1"
	for part in "${parts[@]}"; do
		[[ $part =~ ^([0-9]+)(-([0-9]+))?$ ]] || continue
		first=${BASH_REMATCH[1]}
		last=${BASH_REMATCH[3]:-$first}
		for ((cpu = first; cpu <= last; cpu++)); do
			out+=("$cpu")
		done
	done
	printf '%s' "${out[*]}"
}

# Compresses CPU numbers given as arguments (ascending) to a list like "0-3,8".
compress_list() {
	local list="" start="" prev="" cpu
	for cpu in "$@"; do
		if [[ -n $prev ]] && ((cpu == prev + 1)); then
			prev=$cpu
			continue
		fi
		if [[ -n $start ]]; then
			list+="${list:+,}$start"
			((prev > start)) && list+="-$prev"
		fi
		start=$cpu
		prev=$cpu
	done
	if [[ -n $start ]]; then
		list+="${list:+,}$start"
		((prev > start)) && list+="-$prev"
	fi
	printf '%s' "$list"
}

# Like compress_list, for CPU numbers in any order.
cpu_list() {
	(($# > 0)) || return 0
	local -a sorted
	mapfile -t sorted < <(printf '%s\n' "$@" | sort -n -u)
	compress_list "${sorted[@]}"
}

online_cpus() {
	local list
	if list=$(read_value /sys/devices/system/cpu/online) && [[ -n $list ]]; then
		expand_list "$list"
	else
		local n cpu out=()
		n=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
		for ((cpu = 0; cpu < n; cpu++)); do out+=("$cpu"); done
		printf '%s' "${out[*]}"
	fi
}

# ---- the sysctls of tuning/sysctl.conf ------------------------------------------------------

sysctl_keys=()
sysctl_values=()

load_sysctls() {
	[[ -r $conf ]] || {
		printf 'host.sh: cannot read %s (it belongs next to host.sh)\n' "$conf" >&2
		exit 1
	}
	local line
	local -a words
	while IFS= read -r line || [[ -n $line ]]; do
		line=${line%%#*}
		[[ $line =~ ^[[:space:]]*([A-Za-z0-9_.-]+)[[:space:]]*=(.*)$ ]] || continue
		read -ra words <<<"${BASH_REMATCH[2]}"
		((${#words[@]} > 0)) || continue
		sysctl_keys+=("${BASH_REMATCH[1]}")
		sysctl_values+=("${words[*]}")
	done <"$conf"
}

# How a current value is compared with the recommended one: "min" (each field at least the
# recommended), "exact", or "range" (a port range at least as wide).
mode_of() {
	case $1 in
	net.ipv4.ip_local_port_range) echo range ;;
	net.ipv4.tcp_slow_start_after_idle) echo exact ;;
	*) echo min ;;
	esac
}

# Succeeds when value $2 meets recommendation $3 under mode $1.
meets() {
	local mode=$1 i
	local -a cur rec
	read -ra cur <<<"$2"
	read -ra rec <<<"$3"
	((${#cur[@]} == ${#rec[@]})) || return 1
	for i in "${!rec[@]}"; do
		[[ ${cur[i]} =~ ^[0-9]+$ ]] || return 1
		case $mode in
		exact) ((cur[i] == rec[i])) || return 1 ;;
		range)
			if ((i == 0)); then
				((cur[i] <= rec[i])) || return 1
			else
				((cur[i] >= rec[i])) || return 1
			fi
			;;
		*) ((cur[i] >= rec[i])) || return 1 ;;
		esac
	done
}

# The value --apply writes: the recommendation, but no field of the current value lowered
# (no range narrowed).
merged() {
	local mode=$1 i
	local -a cur rec out
	read -ra cur <<<"$2"
	read -ra rec <<<"$3"
	out=("${rec[@]}")
	if ((${#cur[@]} == ${#rec[@]})); then
		for i in "${!rec[@]}"; do
			[[ ${cur[i]} =~ ^[0-9]+$ ]] || continue
			case $mode in
			exact) ;;
			range)
				if ((i == 0)); then
					((cur[i] < rec[i])) && out[i]=${cur[i]}
				else
					((cur[i] > rec[i])) && out[i]=${cur[i]}
				fi
				;;
			*) ((cur[i] > rec[i])) && out[i]=${cur[i]} ;;
			esac
		done
	fi
	printf '%s' "${out[*]}"
}

# ---- the table -----------------------------------------------------------------------------

n_ok=0
n_change=0
n_na=0
notes=()

row_format='%-38s %-24s %-24s %s\n'

row() {
	# shellcheck disable=SC2059 # the format is the constant above
	printf "$row_format" "$1" "$2" "$3" "$4"
	case $4 in
	OK) n_ok=$((n_ok + 1)) ;;
	CHANGE) n_change=$((n_change + 1)) ;;
	*) n_na=$((n_na + 1)) ;;
	esac
}

check_sysctls() {
	local i key rec cur
	for i in "${!sysctl_keys[@]}"; do
		key=${sysctl_keys[i]}
		rec=${sysctl_values[i]}
		if cur=$(read_value "$(sysctl_path "$key")"); then
			if meets "$(mode_of "$key")" "$cur" "$rec"; then
				row "$key" "$cur" "$rec" OK
			else
				row "$key" "$cur" "$rec" CHANGE
			fi
		else
			row "$key" n/a "$rec" n/a
		fi
	done
}

# Tries io_uring_setup(2) for a one-entry ring. Prints "works" or "fails: <errno>"; fails
# itself when it cannot try (no python3, or an architecture with another syscall number).
probe_io_uring() {
	case $(uname -m) in
	x86_64 | i?86 | aarch64 | armv7* | riscv64 | ppc64le | s390x | loongarch64) ;;
	*) return 1 ;;
	esac
	command -v python3 >/dev/null 2>&1 || return 1
	python3 - 2>/dev/null <<'EOF'
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
params = ctypes.create_string_buffer(120)  # struct io_uring_params, zeroed
fd = libc.syscall(ctypes.c_long(425), ctypes.c_long(1), params)  # io_uring_setup
if fd >= 0:
    os.close(fd)
    print("works")
else:
    e = ctypes.get_errno()
    print("fails: " + errno.errorcode.get(e, str(e)))
EOF
}

check_io_uring() {
	local release major minor value result seccomp
	release=$(uname -r)
	if [[ $release =~ ^([0-9]+)\.([0-9]+) ]]; then
		major=${BASH_REMATCH[1]}
		minor=${BASH_REMATCH[2]}
		if ((major > kernel_min_major || (major == kernel_min_major && minor >= kernel_min_minor))); then
			row "kernel release" "$release" ">= $kernel_min_major.$kernel_min_minor" OK
		else
			row "kernel release" "$release" ">= $kernel_min_major.$kernel_min_minor" CHANGE
			notes+=("the kernel is older than glommio (the router's executor) supports; io_uring networking needs $kernel_min_major.$kernel_min_minor or later")
		fi
	else
		row "kernel release" "$release" ">= $kernel_min_major.$kernel_min_minor" n/a
	fi

	if value=$(read_value /proc/sys/kernel/io_uring_disabled); then
		if [[ $value == 0 ]]; then
			row kernel.io_uring_disabled "$value" 0 OK
		else
			row kernel.io_uring_disabled "$value" 0 CHANGE
			notes+=("kernel.io_uring_disabled=$value: 2 blocks io_uring for everyone, 1 for all but root and the group in kernel.io_uring_group; the router needs io_uring. Not changed by --apply (a security setting): sysctl -w kernel.io_uring_disabled=0, or add the router's user to that group")
		fi
	else
		row kernel.io_uring_disabled "n/a (kernel < 6.6)" 0 n/a
	fi

	if result=$(probe_io_uring) && [[ -n $result ]]; then
		if [[ $result == works ]]; then
			row "io_uring_setup(2) from this shell" "$result" works OK
		else
			row "io_uring_setup(2) from this shell" "$result" works CHANGE
			seccomp=$(awk '$1 == "Seccomp:" { print $2 }' /proc/self/status 2>/dev/null || true)
			if [[ $seccomp == 2 ]]; then
				notes+=("io_uring_setup failed and a seccomp filter is active: container runtimes' default profiles often block io_uring; run the router with a profile that allows io_uring_setup, io_uring_enter and io_uring_register")
			else
				notes+=("io_uring_setup failed ($result): ENOSYS means a kernel without io_uring, EPERM a policy (kernel.io_uring_disabled, seccomp, an LSM)")
			fi
		fi
	else
		row "io_uring_setup(2) from this shell" "n/a (no python3 to try)" works n/a
	fi
}

check_limits() {
	local ncpu=$1 soft hard need
	soft=$(ulimit -S -l)
	hard=$(ulimit -H -l)
	need=$((ncpu * memlock_per_cpu_kib))
	if [[ $soft == unlimited ]] || ((soft >= need)); then
		row "ulimit -l (memlock KiB, soft/hard)" "$soft / $hard" "unlimited (>= $need)" OK
	else
		row "ulimit -l (memlock KiB, soft/hard)" "$soft / $hard" "unlimited (>= $need)" CHANGE
		if ((soft < 512)); then
			notes+=("ulimit -l is $soft KiB: below 512 KiB glommio cannot start a core and the router stops right after its 'starting' line. Install tuning/limits.conf (or LimitMEMLOCK=infinity for a systemd unit)")
		else
			notes+=("ulimit -l is $soft KiB: enough to start, but each core wants about $((memlock_per_cpu_kib / 1024)) MiB for glommio's registered buffers unless the router runs with CAP_IPC_LOCK. Install tuning/limits.conf (or LimitMEMLOCK=infinity for a systemd unit)")
		fi
	fi

	soft=$(ulimit -S -n)
	hard=$(ulimit -H -n)
	need=$((ncpu * links_per_cpu + fd_margin))
	if [[ $soft == unlimited ]] || ((soft >= need)); then
		row "ulimit -n (open files, soft/hard)" "$soft / $hard" ">= $need" OK
	else
		row "ulimit -n (open files, soft/hard)" "$soft / $hard" ">= $need" CHANGE
		notes+=("ulimit -n is $soft: the router allows limits.links_max (default $links_per_cpu) connections per core; tuning/limits.conf sets 1048576")
	fi
}

check_governor() {
	local -a files
	local file value summary=""
	local -A count=()
	shopt -s nullglob
	files=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
	shopt -u nullglob
	if ((${#files[@]} == 0)); then
		row "CPU frequency governor" "n/a (no cpufreq)" performance n/a
		return
	fi
	for file in "${files[@]}"; do
		value=$(read_value "$file") || value=unreadable
		count[$value]=$((${count[$value]:-0} + 1))
	done
	for value in "${!count[@]}"; do
		summary+="${summary:+, }$value x${count[$value]}"
	done
	if ((${#count[@]} == 1)) && [[ -n ${count[performance]:-} ]]; then
		row "CPU frequency governor" "$summary" performance OK
	else
		row "CPU frequency governor" "$summary" performance CHANGE
	fi
}

# The bracketed choice of a sysfs selector like "always [madvise] never".
selected() {
	local value
	value=$(read_value "$1") || return 1
	[[ $value =~ \[([^]]+)\] ]] || return 1
	printf '%s' "${BASH_REMATCH[1]}"
}

check_thp() {
	local value
	if value=$(selected /sys/kernel/mm/transparent_hugepage/enabled); then
		if [[ $value == madvise ]]; then
			row "transparent hugepages (enabled)" "$value" madvise OK
		else
			row "transparent hugepages (enabled)" "$value" madvise CHANGE
			notes+=("transparent hugepages are '$value'; madvise gives huge pages only to memory that asks for them. Not changed by --apply: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (as root, until reboot; transparent_hugepage=madvise on the kernel command line to keep it)")
		fi
	else
		row "transparent hugepages (enabled)" n/a madvise n/a
	fi
	if value=$(selected /sys/kernel/mm/transparent_hugepage/defrag); then
		if [[ $value == always ]]; then
			row "transparent hugepages (defrag)" "$value" "madvise (not always)" CHANGE
			notes+=("THP defrag is 'always': a page fault may stall in direct compaction on a router core. Not changed by --apply: echo madvise > /sys/kernel/mm/transparent_hugepage/defrag")
		else
			row "transparent hugepages (defrag)" "$value" "madvise (not always)" OK
		fi
	else
		row "transparent hugepages (defrag)" n/a "madvise (not always)" n/a
	fi
}

print_table() {
	local -a cpus
	read -ra cpus <<<"$(online_cpus)"
	n_ok=0 n_change=0 n_na=0 notes=()
	# shellcheck disable=SC2059 # the format is the constant above
	printf "$row_format" knob current recommended status
	# shellcheck disable=SC2059
	printf "$row_format" ---- ------- ----------- ------
	check_sysctls
	check_io_uring
	check_limits "${#cpus[@]}"
	check_governor
	check_thp
	printf '\n%d OK, %d CHANGE, %d n/a (not present or not readable here)\n' \
		"$n_ok" "$n_change" "$n_na"
	if ((${#notes[@]} > 0)); then
		printf '\nNotes:\n'
		local note
		for note in "${notes[@]}"; do
			printf '%s\n' "$note" | fold -s -w 92 | sed -e 's/ *$//' -e '1s/^/  - /' -e '2,$s/^/    /'
		done
	fi
}

# ---- CPU and IRQ advice --------------------------------------------------------------------

nic_irq_numbers=()

print_nic_irqs() {
	local netdir iface dev driver d f irq
	local -a irqs
	local found=0
	printf '\nNIC interrupts (/proc/interrupts; affinity from /proc/irq/N/smp_affinity_list):\n'
	for netdir in /sys/class/net/*; do
		[[ -e $netdir/device ]] || continue
		iface=${netdir##*/}
		dev=$(readlink -f "$netdir/device") || continue
		driver=$(readlink -f "$dev/driver" 2>/dev/null || true)
		driver=${driver##*/}
		irqs=()
		for d in "$dev" "$dev/.."; do
			if [[ -d $d/msi_irqs ]]; then
				for f in "$d"/msi_irqs/*; do
					[[ -e $f ]] && irqs+=("${f##*/}")
				done
				break
			fi
		done
		if ((${#irqs[@]} == 0)) && irq=$(read_value "$dev/irq") && [[ $irq =~ ^[1-9][0-9]*$ ]]; then
			irqs=("$irq")
		fi
		found=1
		printf '  %s (driver %s, device %s)\n' "$iface" "${driver:-unknown}" "${dev##*/}"
		if ((${#irqs[@]} == 0)); then
			printf '    no IRQs found for it\n'
			continue
		fi
		mapfile -t irqs < <(printf '%s\n' "${irqs[@]}" | sort -n)
		nic_irq_numbers+=("${irqs[@]}")
		printf '    %-6s %-10s %-12s %-12s %s\n' IRQ affinity "ran on CPUs" count name
		awk -v want=" ${irqs[*]} " '
			NR == 1 { ncol = NF; for (i = 1; i <= NF; i++) cpu[i] = substr($i, 4); next }
			{
				irq = $1; sub(":", "", irq)
				if (index(want, " " irq " ") == 0) next
				total = 0; on = ""
				for (i = 1; i <= ncol; i++) {
					c = $(i + 1); total += c
					if (c > 0) on = on (on == "" ? "" : ",") cpu[i]
				}
				printf "%s\t%s\t%s\t%s\n", irq, (on == "" ? "-" : on), total, $NF
			}' /proc/interrupts 2>/dev/null |
			while IFS=$'\t' read -r irq on total name; do
				local affinity
				local -a ran
				affinity=$(read_value "/proc/irq/$irq/smp_affinity_list") || affinity=n/a
				if [[ $on != - ]]; then
					IFS=, read -ra ran <<<"$on"
					on=$(cpu_list "${ran[@]}")
				fi
				printf '    %-6s %-10s %-12s %-12s %s\n' "$irq" "$affinity" "$on" "$total" "$name"
			done
	done
	if ((found == 0)); then
		printf '  none: no network interface here is backed by a device (loopback and virtual only)\n'
	fi
}

print_advice() {
	local -a cpus words units
	local cpu sib key word cmdline isolated running=no smt=off
	local -A seen=()
	read -ra cpus <<<"$(online_cpus)"

	printf '\nCPU isolation and IRQ advice (nothing below is changed by this script)\n'
	if [[ $(read_value /sys/devices/system/cpu/smt/active 2>/dev/null || true) == 1 ]]; then
		smt=on
	fi
	printf '  CPUs online: %s (%d, SMT %s)\n' "$(cpu_list "${cpus[@]}")" "${#cpus[@]}" "$smt"

	cmdline=$(read_value /proc/cmdline || true)
	read -ra words <<<"$cmdline"
	for key in isolcpus nohz_full rcu_nocbs irqaffinity; do
		local value=none
		for word in "${words[@]}"; do
			[[ $word == "$key="* ]] && value=${word#*=}
		done
		printf '  /proc/cmdline %-12s %s\n' "$key:" "$value"
	done
	isolated=$(read_value /sys/devices/system/cpu/isolated || true)
	printf '  isolated CPUs (/sys/devices/system/cpu/isolated): %s\n' "${isolated:-none}"
	if grep -qsx irqbalance /proc/[0-9]*/comm; then
		running=yes
	fi
	printf '  irqbalance running: %s\n' "$running"

	print_nic_irqs

	# Physical cores: groups of SMT siblings, in CPU order.
	units=()
	for cpu in "${cpus[@]}"; do
		sib=$(read_value "/sys/devices/system/cpu/cpu$cpu/topology/thread_siblings_list" 2>/dev/null) || sib=$cpu
		key=$(expand_list "$sib")
		[[ -n $key ]] || key=$cpu
		[[ -n ${seen[$key]:-} ]] && continue
		seen[$key]=1
		units+=("$key")
	done

	if ((${#cpus[@]} == 1)); then
		printf '\nSuggested plan for 1 CPU:\n'
	else
		printf '\nSuggested plan for %d CPUs:\n' "${#cpus[@]}"
	fi
	if ((${#units[@]} < 2)); then
		printf '  One physical core: the router, the load generator and interrupts share it.\n'
		printf '  Benchmarks here can compare router CPU time per packet, not packets/s.\n'
		return
	fi
	local -a hk=() router=() loadgen=() idle=() rest=()
	local i n_router
	read -ra hk <<<"${units[0]}"
	rest=("${units[@]:1}")
	n_router=$(((${#rest[@]} + 1) / 2))
	for i in "${!rest[@]}"; do
		local -a threads
		read -ra threads <<<"${rest[i]}"
		if ((i < n_router)); then
			router+=("${threads[0]}")
			idle+=("${threads[@]:1}")
		else
			loadgen+=("${threads[@]}")
		fi
	done
	local hk_list router_list loadgen_list
	hk_list=$(cpu_list "${hk[@]}")
	router_list=$(cpu_list "${router[@]}")
	printf '  Benchmark (router and ilp-loadgen on this host):\n'
	printf '    interrupts and the rest of the system: CPU %s\n' "$hk_list"
	printf '    router:      ilp-router run --cpu-list %s ...\n' "$router_list"
	if ((${#loadgen[@]} > 0)); then
		loadgen_list=$(cpu_list "${loadgen[@]}")
		printf '    load:        ilp-loadgen --cpu-list %s ...\n' "$loadgen_list"
	else
		printf '    load:        ilp-loadgen --cpu-list %s ...  (shares CPU %s with interrupts and the\n' "$hk_list" "$hk_list"
		printf '                 system: compare router CPU time per packet, not packets/s)\n'
	fi
	if ((${#idle[@]} > 0)); then
		printf '    SMT siblings of router cores, left idle for clean figures: %s\n' "$(cpu_list "${idle[@]}")"
	fi
	local -a all_rest=() siblings=()
	for i in "${!rest[@]}"; do
		local -a threads
		read -ra threads <<<"${rest[i]}"
		all_rest+=("${threads[0]}")
		siblings+=("${threads[@]:1}")
	done
	printf '  Production (router alone): interrupts on CPU %s; ilp-router run --cpu-list %s\n' \
		"$hk_list" "$(cpu_list "${all_rest[@]}")"
	if ((${#siblings[@]} > 0)); then
		printf '    (one thread per physical core; measure before adding the siblings %s)\n' "$(cpu_list "${siblings[@]}")"
	fi
	if ((${#nic_irq_numbers[@]} > 0)); then
		printf '  NIC interrupts to CPU %s (as root, until reboot; stop irqbalance first or it moves them back):\n' "$hk_list"
		# shellcheck disable=SC2016 # $irq is for the reader's shell
		printf '    for irq in %s; do echo %s > /proc/irq/$irq/smp_affinity_list; done\n' \
			"${nic_irq_numbers[*]}" "$hk_list"
	fi
	local -a isolate=()
	for i in "${!rest[@]}"; do
		local -a threads
		read -ra threads <<<"${rest[i]}"
		isolate+=("${threads[@]}")
	done
	local iso_list
	iso_list=$(cpu_list "${isolate[@]}")
	printf '  Kernel parameters to consider (boot loader, then reboot; never set by this script):\n'
	printf '    isolcpus=managed_irq,domain,%s nohz_full=%s rcu_nocbs=%s irqaffinity=%s\n' \
		"$iso_list" "$iso_list" "$iso_list" "$hk_list"
}

# ---- apply ---------------------------------------------------------------------------------

undo=()
failed=()

write_sysctl() {
	local key=$1 value=$2
	if command -v sysctl >/dev/null 2>&1; then
		sysctl -q -w "$key=$value" 2>&1
	else
		{ printf '%s\n' "$value" >"$(sysctl_path "$key")"; } 2>&1
	fi
}

apply_sysctls() {
	local i key rec mode cur new after err
	printf 'sysctls (from tuning/sysctl.conf):\n'
	for i in "${!sysctl_keys[@]}"; do
		key=${sysctl_keys[i]}
		rec=${sysctl_values[i]}
		mode=$(mode_of "$key")
		if ! cur=$(read_value "$(sysctl_path "$key")"); then
			printf '  %-38s not present here\n' "$key"
			failed+=("$key (not present)")
			continue
		fi
		if meets "$mode" "$cur" "$rec"; then
			printf '  %-38s %s (kept)\n' "$key" "$cur"
			continue
		fi
		new=$(merged "$mode" "$cur" "$rec")
		if err=$(write_sysctl "$key" "$new") && after=$(read_value "$(sysctl_path "$key")") &&
			meets "$mode" "$after" "$rec"; then
			printf '  %-38s %s -> %s\n' "$key" "$cur" "$after"
			undo+=("sysctl -w $key='$cur'")
		else
			err=${err//$'\n'/ }
			printf '  %-38s %s: could not set %s%s\n' "$key" "$cur" "$new" "${err:+ ($err)}"
			failed+=("$key")
		fi
	done
}

apply_governor() {
	local -a files
	local file dir cur avail changed=0 kept=0
	shopt -s nullglob
	files=(/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor)
	shopt -u nullglob
	printf '\nCPU frequency governor:\n'
	if ((${#files[@]} == 0)); then
		printf '  no cpufreq here (common in VMs: the host sets the frequency)\n'
		return
	fi
	for file in "${files[@]}"; do
		dir=${file%/cpufreq/*}
		cur=$(read_value "$file") || cur=unreadable
		if [[ $cur == performance ]]; then
			kept=$((kept + 1))
			continue
		fi
		avail=$(read_value "${file%/*}/scaling_available_governors") || avail=""
		if [[ " $avail " != *" performance "* ]]; then
			printf '  %s: %s; performance is not offered (%s)\n' "${dir##*/}" "$cur" "${avail:-none listed}"
			failed+=("governor of ${dir##*/}")
			continue
		fi
		if { printf 'performance\n' >"$file"; } 2>/dev/null && [[ $(read_value "$file") == performance ]]; then
			changed=$((changed + 1))
			undo+=("echo $cur > $file")
		else
			printf '  %s: could not set performance (still %s)\n' "${dir##*/}" "$cur"
			failed+=("governor of ${dir##*/}")
		fi
	done
	printf '  set to performance on %d CPUs; already performance on %d\n' "$changed" "$kept"
}

persist_sysctls() {
	printf '\nPersist: %s\n' "$persist_path"
	if ! { install -m 0644 "$conf" "$persist_path"; } 2>/dev/null; then
		printf 'host.sh: cannot write %s (read-only /etc?); nothing was persisted\n' "$persist_path" >&2
		exit 1
	fi
	printf '  written from tuning/sysctl.conf; undo: rm %s (the running values stay until reboot)\n' "$persist_path"

	# Files read after ours set the same keys last and win at boot.
	local -a later=()
	local dir file
	for dir in /etc/sysctl.d /run/sysctl.d /usr/local/lib/sysctl.d /usr/lib/sysctl.d /lib/sysctl.d; do
		for file in "$dir"/*.conf; do
			[[ -f $file ]] || continue
			[[ ${file##*/} > ${persist_path##*/} ]] && later+=("$file")
		done
	done
	[[ -f /etc/sysctl.conf ]] && later+=(/etc/sysctl.conf)
	local key i cur rec
	for key in "${sysctl_keys[@]}"; do
		for file in "${later[@]}"; do
			if grep -Eqs "^[[:space:]]*-?${key//./\\.}[[:space:]]*=" "$file"; then
				printf '  note: %s also sets %s and is read later, so its value wins at boot\n' "$file" "$key"
			fi
		done
	done
	for i in "${!sysctl_keys[@]}"; do
		key=${sysctl_keys[i]}
		rec=${sysctl_values[i]}
		cur=$(read_value "$(sysctl_path "$key")") || continue
		if [[ $cur != "$rec" ]] && meets "$(mode_of "$key")" "$cur" "$rec"; then
			printf '  note: %s is %s now; at boot the file sets %s\n' "$key" "$cur" "$rec"
		fi
	done
}

run_apply() {
	if ((EUID != 0)); then
		printf 'host.sh: --apply changes kernel settings and must run as root (sudo tuning/host.sh --apply)\n' >&2
		exit 1
	fi
	apply_sysctls
	apply_governor
	((persist)) && persist_sysctls

	printf '\nNot changed by --apply:\n'
	printf '  - ulimit -l / ulimit -n: per process, set at login or by systemd; install tuning/limits.conf\n'
	printf '    as /etc/security/limits.d/90-ilp-router.conf, or LimitMEMLOCK= / LimitNOFILE= in the unit\n'
	printf '  - transparent hugepages, kernel.io_uring_disabled: see the notes below\n'
	printf '  - IRQ affinity and CPU isolation: advice only, see tuning/host.sh --check\n'

	printf '\nState after --apply:\n\n'
	print_table

	if ((${#failed[@]} > 0)); then
		printf '\nCould not set:\n'
		printf '  %s\n' "${failed[@]}"
	fi
	if ((${#undo[@]} > 0)); then
		printf '\nTo undo now (as root):\n'
		local line
		for line in "${undo[@]}"; do
			printf '  %s\n' "$line"
		done
	else
		printf '\nNothing was changed.\n'
	fi
}

# ---- main ----------------------------------------------------------------------------------

mode=""
persist=0
(($# > 0)) || usage_error "give --check or --apply"
for arg in "$@"; do
	case $arg in
	--check | --apply)
		[[ -z $mode ]] || usage_error "give only one of --check and --apply"
		mode=${arg#--}
		;;
	--persist) persist=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*) usage_error "unknown argument: $arg" ;;
	esac
done
[[ -n $mode ]] || usage_error "give --check or --apply"
((persist == 0)) || [[ $mode == apply ]] || usage_error "--persist goes with --apply"

load_sysctls
case $mode in
check)
	print_table
	print_advice
	;;
apply) run_apply ;;
esac
