#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks the result with dpkg's own tools, not by
# trusting cargo-deb:
#   - control fields: Package, Version (the workspace's version, -1), Architecture, Section,
#     Priority, the synopsis (Cargo.toml's description, on one line), Depends (adduser, procps,
#     and libc6 from `$auto`, which shows that dpkg-shlibdeps ran);
#   - every file, its mode and owner, and nothing else; the files copied from the tree are
#     byte for byte their sources; the binaries are stripped and the -dbgsym .ddeb holds
#     their debug info under their build ids;
#   - conffiles (exactly the /etc files), the maintainer scripts (ours, with the systemd
#     snippets cargo-deb puts in place of #DEBHELPER#: registered, not enabled or started,
#     try-restart after an upgrade, stopped on remove, masked and purged);
#   - from an extracted copy: both binaries run (--version), `ilp-router check-config` accepts
#     the example config (it needs nothing from the machine), `host.sh --check` finds the
#     sysctl.conf beside it, `systemd-analyze verify` accepts the unit, and the paths the unit
#     names are in the package;
#   - the maintainer scripts run for real: postinst configure, again as an upgrade with a
#     dpkg-statoverride on the config, once more with the config deleted, then prerm and
#     postrm remove and postrm purge. They run as root in a private mount namespace over
#     copies of /etc, /var and /run, so the machine is left as it was, and must make the
#     system user ilp-router, /var/lib/ilp-router ilp-router:ilp-router 0750 and the config
#     root:ilp-router 0640, keep an admin's statoverride, leave the unit disabled, mask it on
#     remove, and keep the state directory on purge. Skipped, saying why, without root (or
#     sudo -n) or where mount namespaces are not allowed (a container without
#     CAP_SYS_ADMIN).
#
#   bash packaging/check-deb.sh        (.ci/run runs it after the tests)
#
# Exit 0 when every check passed, 1 when one failed; each failure says what was expected and
# what was found. Tools: cargo-deb 3.8.0 (cargo install, when missing), and Debian's dpkg-dev
# (without dpkg-shlibdeps cargo-deb leaves out the library dependencies with only a warning),
# binutils, adduser, procps and systemd (systemd-analyze), installed with apt-get when
# missing (sudo when not root). When a tool is still missing, what needs it is skipped with
# the reason; with CI set in the environment that is a failure instead.
#
# The package and the -dbgsym .ddeb are left in target/check-deb/.
#
# Time, measured on 2 CPUs shared with other builds (load 3 to 5): `cargo install cargo-deb`
# 4 min 25 s (205 s of CPU); `cargo deb` from an empty target dir (the release build of both
# binaries, thin LTO and one codegen unit, then strip, dbgsym and xz) 6 min 12 s (356 s of
# CPU), of which the packaging (no compiling) takes 25 to 50 s; the checks 5 s. CI has
# neither cargo-deb nor a release build, so this step adds at most about 11 minutes there
# (less on CPUs it does not share).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo_deb_version=3.8.0
pkg=ilp-router
out=target/check-deb
export CARGO_TERM_COLOR=never LC_ALL=C

in_ci=""
[ -n "${CI+set}" ] && in_ci=1

failures=0
passed=0
ok() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failures=$((failures + 1)); printf 'FAIL  %s\n' "$1" >&2; }
# A check that cannot run: under CI a failure, otherwise a skip with the reason.
cannot() {
	if [ -n "$in_ci" ]; then fail "$1 (CI: this must run)"; else printf 'skip  %s\n' "$1"; fi
}
# expect <what> <expected> <found>
expect() {
	if [ "$2" = "$3" ]; then ok "$1: $2"; else fail "$1: expected '$2', found '$3'"; fi
}
finish() {
	echo "check-deb: $passed checks passed, $failures failed"
	[ "$failures" = 0 ] || exit 1
	exit 0
}

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
ns_priv=""

# ---- tools -----------------------------------------------------------------------------------

has() { command -v "$1" >/dev/null 2>&1; }
# Commands in /usr/sbin are not on a user's PATH: look there too.
has_sbin() { has "$1" || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
has_kill() { [ -x /usr/bin/kill ] || [ -x /bin/kill ]; }

if ! has dpkg-deb || ! has dpkg; then
	cannot "not a Debian system (no dpkg-deb): cannot build or check the .deb"
	finish
fi

apt_pkgs=()
{ has dpkg-shlibdeps && has dpkg-architecture; } || apt_pkgs+=(dpkg-dev)
{ has readelf && has strip && has objcopy; } || apt_pkgs+=(binutils)
has_sbin adduser || apt_pkgs+=(adduser)
has_kill || apt_pkgs+=(procps)
has systemd-analyze || apt_pkgs+=(systemd)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
	echo "== installing Debian packages: ${apt_pkgs[*]}"
	if has apt-get && { [ -z "$sudo" ] || has sudo; }; then
		$sudo apt-get update -qq &&
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
				"${apt_pkgs[@]}" >/dev/null ||
			echo "check-deb: could not install ${apt_pkgs[*]}" >&2
	else
		echo "check-deb: no apt-get (or no sudo): cannot install ${apt_pkgs[*]}" >&2
	fi
fi

if ! has dpkg-shlibdeps; then
	cannot "no dpkg-shlibdeps (Debian's dpkg-dev): cargo-deb would leave out the library dependencies"
	finish
fi

have_cargo_deb=$(cargo deb --version 2>/dev/null | awk '{ print $2 }') || have_cargo_deb=""
if [ "$have_cargo_deb" != "$cargo_deb_version" ]; then
	if [ -z "$have_cargo_deb" ] || [ -n "$in_ci" ]; then
		echo "== cargo install cargo-deb --version $cargo_deb_version --locked"
		if ! cargo install cargo-deb --version "$cargo_deb_version" --locked; then
			cannot "cargo install cargo-deb $cargo_deb_version failed: cannot build the .deb"
			finish
		fi
	else
		echo "check-deb: using the installed cargo-deb $have_cargo_deb (CI uses $cargo_deb_version)"
	fi
fi

# ---- build -----------------------------------------------------------------------------------

# The assets name target/release/ilp-loadgen, from the other workspace member: cargo-deb sees
# that and builds with --workspace, so both binaries are built here.
echo "== cargo deb -p $pkg --locked --output $out/"
rm -rf "$out"
mkdir -p "$out"
if ! cargo deb -p "$pkg" --locked --output "$out/"; then
	fail "cargo deb: expected a package built, found the build failed (above)"
	finish
fi

pkgid=$(cargo pkgid --locked -p "$pkg")
version=${pkgid##*[#@]}
arch=$(dpkg --print-architecture)
deb="$out/${pkg}_${version}-1_${arch}.deb"
ddeb="$out/${pkg}-dbgsym_${version}-1_${arch}.ddeb"
built=$(cd "$out" && ls -1 | sort | tr '\n' ' ')
expect "files cargo-deb wrote" "$(basename "$ddeb") $(basename "$deb") " "$built"
[ -f "$deb" ] || finish

work=$(mktemp -d)
ns_dir=""
cleanup() {
	[ -z "$ns_dir" ] || $ns_priv rm -rf "$ns_dir" || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "== $deb: control fields"
field() { dpkg-deb -f "$1" "$2"; }
expect "Package" "$pkg" "$(field "$deb" Package)"
expect "Version" "$version-1" "$(field "$deb" Version)"
expect "Architecture" "$arch" "$(field "$deb" Architecture)"
expect "Section" "net" "$(field "$deb" Section)"
expect "Priority" "optional" "$(field "$deb" Priority)"
[ -n "$(field "$deb" Maintainer)" ] && ok "Maintainer is set" || fail "Maintainer: expected a value, found none"
# The synopsis is the first line of Description. cargo-deb wraps a Cargo.toml description
# longer than 79 characters, and the rest becomes the first line of the long description.
description=$(sed -n '/^\[package\]/,/^\[/s/^description = "\(.*\)"$/\1/p' Cargo.toml)
# sed reads to the end (head would close the pipe early: SIGPIPE, and pipefail aborts).
synopsis=$(field "$deb" Description | sed -n 1p)
expect "Description synopsis (Cargo.toml's description)" "$description" "$synopsis"
if [ "${#description}" -le 79 ]; then
	ok "synopsis under 80 characters (${#description})"
else
	fail "synopsis: expected under 80 characters (Debian policy 3.4.1; cargo-deb wraps longer ones), found ${#description}"
fi
depends=$(field "$deb" Depends)
dep_names=$(printf '%s\n' "$depends" | tr ',|' '\n\n' | sed 's/(.*//; s/[[:space:]]//g' | sort -u)
for dep in adduser procps libc6; do
	if grep -qx "$dep" <<<"$dep_names"; then ok "Depends has $dep"; else fail "Depends: expected $dep among them, found '$depends'"; fi
done

echo "== $deb: files"
# mode path; every one owned by root (0/0).
expected_files="
-rwxr-xr-x ./usr/bin/ilp-router
-rwxr-xr-x ./usr/bin/ilp-loadgen
-rw-r--r-- ./usr/lib/systemd/system/ilp-router.service
-rw-r----- ./etc/ilp-router/ilp-router.toml
-rw-r--r-- ./etc/default/ilp-router
-rw-r--r-- ./usr/share/doc/ilp-router/README.md
-rw-r--r-- ./usr/share/doc/ilp-router/tuning.md
-rw-r--r-- ./usr/share/doc/ilp-router/copyright
-rwxr-xr-x ./usr/share/ilp-router/tuning/host.sh
-rw-r--r-- ./usr/share/ilp-router/tuning/sysctl.conf
-rw-r--r-- ./usr/share/ilp-router/tuning/limits.conf
"
dpkg-deb -c "$deb" >"$work/contents"
# "mode owner path" for each entry.
awk '{ print $1, $2, $6 }' "$work/contents" >"$work/entries"
while read -r mode path; do
	[ -n "$path" ] || continue
	found=$(awk -v p="$path" '$3 == p { print $1, $2 }' "$work/entries")
	case "$found" in
	"$mode 0/0" | "$mode root/root") ok "$path $mode root" ;;
	"") fail "$path: expected in the package ($mode, root), found missing" ;;
	*) fail "$path: expected $mode owned by root, found $found" ;;
	esac
done <<<"$expected_files"
while read -r mode owner path; do
	case "$mode" in
	d*)
		[ "$mode" = drwxr-xr-x ] && { [ "$owner" = 0/0 ] || [ "$owner" = root/root ]; } ||
			fail "directory $path: expected drwxr-xr-x root, found $mode $owner"
		;;
	*)
		awk -v p="$path" '$2 == p { found = 1 } END { exit !found }' <<<"$expected_files" ||
			fail "$path: expected no such file in the package, found $mode $owner"
		;;
	esac
done <"$work/entries"

x="$work/root"
mkdir -p "$x" "$work/ctrl"
dpkg-deb -x "$deb" "$x"
dpkg-deb -e "$deb" "$work/ctrl"
same() { # same <packaged path> <source in the tree>
	if cmp -s "$x$1" "$2"; then ok "$1 is $2"; else fail "$1: expected the same bytes as $2, found different ones"; fi
}
same /etc/ilp-router/ilp-router.toml packaging/ilp-router.toml
same /etc/default/ilp-router packaging/default
same /usr/lib/systemd/system/ilp-router.service tuning/ilp-router.service
same /usr/share/doc/ilp-router/README.md README.md
same /usr/share/doc/ilp-router/tuning.md tuning/README.md
same /usr/share/ilp-router/tuning/host.sh tuning/host.sh
same /usr/share/ilp-router/tuning/sysctl.conf tuning/sysctl.conf
same /usr/share/ilp-router/tuning/limits.conf tuning/limits.conf

echo "== $ddeb: debug info"
if [ -f "$ddeb" ]; then
	expect "dbgsym Package" "$pkg-dbgsym" "$(field "$ddeb" Package)"
	expect "dbgsym Version" "$version-1" "$(field "$ddeb" Version)"
	dpkg-deb -c "$ddeb" | awk '{ print $6 }' >"$work/ddeb-files"
fi
for bin in ilp-router ilp-loadgen; do
	f="$x/usr/bin/$bin"
	if ! has readelf; then
		cannot "no readelf (binutils): /usr/bin/$bin not checked for stripping and debug info"
		continue
	fi
	if readelf -S --wide "$f" | grep -E '\.(debug_[a-z]+|symtab) ' >/dev/null; then
		fail "/usr/bin/$bin: expected stripped (no .debug_* or .symtab section), found $(readelf -S --wide "$f" | grep -oE '\.(debug_[a-z]+|symtab) ' | tr -d ' ' | tr '\n' ' ')"
	else
		ok "/usr/bin/$bin is stripped"
	fi
	id=$(readelf -n "$f" | sed -n 's/^ *Build ID: *//p')
	want="./usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
	if [ -n "$id" ] && [ -f "$ddeb" ] && grep -qxF "$want" "$work/ddeb-files"; then
		ok "/usr/bin/$bin's debug info in the .ddeb ($want)"
	else
		fail "/usr/bin/$bin: expected $want (its build id '$id') in $ddeb, found $(tr '\n' ' ' <"$work/ddeb-files" 2>/dev/null || echo 'no .ddeb')"
	fi
done

echo "== $deb: conffiles and maintainer scripts"
expect "conffiles" "/etc/default/ilp-router /etc/ilp-router/ilp-router.toml " \
	"$(sort "$work/ctrl/conffiles" 2>/dev/null | tr '\n' ' ')"
members=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t | sed 's|^\./||; /^$/d' | sort | tr '\n' ' ')
expect "control members" "conffiles control postinst postrm prerm " "$members"
for s in postinst prerm postrm; do
	f="$work/ctrl/$s"
	[ -f "$f" ] || continue
	[ -x "$f" ] && ok "$s is executable" || fail "$s: expected executable, found $(stat -c %A "$f")"
	sh -n "$f" && ok "$s parses (sh -n)" || fail "$s: expected valid sh, found a syntax error"
	if grep -q '#DEBHELPER#' "$f"; then fail "$s: expected #DEBHELPER# replaced, found it left in"; fi
done
# has <script> <what> <fixed string>
has_line() {
	if grep -qF -- "$3" "$work/ctrl/$1"; then ok "$1: $2"; else fail "$1: expected $2 ('$3'), found no such line"; fi
}
# Ours first, as written up to #DEBHELPER#.
for s in postinst postrm; do
	sed '/#DEBHELPER#/,$d' "packaging/$s" >"$work/ours-$s"
	n=$(wc -l <"$work/ours-$s")
	if head -n "$n" "$work/ctrl/$s" | cmp -s - "$work/ours-$s"; then
		ok "$s starts with packaging/$s"
	else
		fail "$s: expected to start with packaging/$s up to #DEBHELPER#, found: $(diff "$work/ours-$s" <(head -n "$n" "$work/ctrl/$s") | head -5 | tr '\n' ' ')"
	fi
done
has_line postinst "makes the system user" "adduser --system --group --home /var/lib/ilp-router"
has_line postinst "registers the unit without enabling it" "deb-systemd-helper debian-installed ilp-router.service"
has_line postinst "reloads systemd" "systemctl --system daemon-reload"
has_line postinst "restarts a running service after an upgrade" "deb-systemd-invoke try-restart ilp-router.service"
if grep -qE 'deb-systemd-invoke +(start|restart) ' "$work/ctrl/postinst"; then
	fail "postinst: expected the service not started on install, found: $(grep -E 'deb-systemd-invoke +(start|restart) ' "$work/ctrl/postinst")"
else
	ok "postinst: does not start the service"
fi
has_line prerm "stops the service on remove only" 'if [ -d /run/systemd/system ] && [ "$1" = remove ]; then'
has_line prerm "stops the service" "deb-systemd-invoke stop ilp-router.service"
has_line postrm "masks the unit on remove" "deb-systemd-helper mask ilp-router.service"
has_line postrm "forgets the unit on purge" "deb-systemd-helper purge ilp-router.service"

echo "== the extracted package"
got=$("$x/usr/bin/ilp-router" --version 2>&1) || true
expect "ilp-router --version" "ilp-router $version" "$got"
got=$("$x/usr/bin/ilp-loadgen" --version 2>&1) || true
expect "ilp-loadgen --version" "ilp-loadgen $version" "$got"
if got=$("$x/usr/bin/ilp-router" check-config "$x/etc/ilp-router/ilp-router.toml" 2>&1); then
	ok "ilp-router check-config accepts /etc/ilp-router/ilp-router.toml (${got##*: ok: })"
else
	fail "ilp-router check-config /etc/ilp-router/ilp-router.toml: expected success, found: $got"
fi
if got=$("$x/usr/share/ilp-router/tuning/host.sh" --check 2>&1); then
	ok "/usr/share/ilp-router/tuning/host.sh --check runs"
else
	fail "/usr/share/ilp-router/tuning/host.sh --check: expected exit 0, found: $(tail -n 3 <<<"$got")"
fi

unit="$x/usr/lib/systemd/system/ilp-router.service"
# unit_value <key>: the value of the unit's first <key>= line.
unit_value() { sed -n "s/^$1=//p" "$unit" | sed -n 1p; }
exec_start=$(unit_value ExecStart)
exe=${exec_start%% *}
[ -x "$x$exe" ] && ok "unit ExecStart $exe is in the package" || fail "unit ExecStart: expected $exe in the package, found none"
cfg=$(sed -n 's/.*--config \([^ ]*\).*/\1/p' <<<"$exec_start")
[ -n "$cfg" ] && [ -f "$x$cfg" ] && ok "unit --config $cfg is in the package" || fail "unit --config: expected '$cfg' in the package, found none"
env_file=$(unit_value EnvironmentFile)
env_file=${env_file#-}
[ -f "$x$env_file" ] && ok "unit EnvironmentFile $env_file is in the package" || fail "unit EnvironmentFile: expected $env_file in the package, found none"
doc=$(unit_value Documentation)
doc=${doc#file://}
[ -f "$x$doc" ] && ok "unit Documentation $doc is in the package" || fail "unit Documentation: expected $doc in the package, found none"
state_dir=$(sed -n '/^\[state\]/,/^\[/s/^dir = "\(.*\)"$/\1/p' "$x$cfg")
expect "the config's [state] dir is the unit's StateDirectory" "/var/lib/$(unit_value StateDirectory)" "$state_dir"
expect "the unit's User" "ilp-router" "$(unit_value User)"

# systemd-analyze verify checks that the unit's commands exist, so it runs on a root made of
# the host's unit directory (the targets the unit names), the packaged unit and binary, and
# the host's kill (/bin/kill of ExecReload=, from procps, which the package depends on). It
# prints its complaints and still exits 0 for most of them: any output is a failure.
if has systemd-analyze; then
	units=/usr/lib/systemd/system
	[ -d "$units" ] || units=/lib/systemd/system
	kill_bin=$(readlink -f /usr/bin/kill 2>/dev/null || readlink -f /bin/kill)
	v="$work/verify-root"
	mkdir -p "$v/usr/lib/systemd" "$v/usr/bin"
	ln -s usr/bin "$v/bin"
	ln -s usr/lib "$v/lib"
	cp -a "$units" "$v/usr/lib/systemd/system"
	cp "$unit" "$v/usr/lib/systemd/system/ilp-router.service"
	cp "$x/usr/bin/ilp-router" "$v/usr/bin/ilp-router"
	[ -x "$kill_bin" ] && cp "$kill_bin" "$v/usr/bin/kill"
	if got=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify --root="$v" /usr/lib/systemd/system/ilp-router.service 2>&1) && [ -z "$got" ]; then
		ok "systemd-analyze verify accepts ilp-router.service ($(systemd-analyze --version | sed -n 1p))"
	else
		fail "systemd-analyze verify ilp-router.service: expected no complaint, found: $got"
	fi
else
	cannot "no systemd-analyze (Debian's systemd): the unit is not verified"
fi

# ---- the maintainer scripts, run -------------------------------------------------------------

echo "== the maintainer scripts, run in a private mount namespace"
ns_priv=""
if [ "$(id -u)" = 0 ]; then
	ns_priv=""
elif has sudo && sudo -n true 2>/dev/null; then
	ns_priv="sudo -n"
else
	ns_priv="none"
fi
if [ "$ns_priv" = none ]; then
	ns_priv=""
	printf 'skip  %s\n' "maintainer scripts not run: that needs root, or sudo without a password"
elif ! $ns_priv unshare --mount --propagation private true 2>/dev/null; then
	printf 'skip  %s\n' "maintainer scripts not run: no private mount namespace here (unshare --mount: not permitted)"
elif ! has_sbin adduser; then
	cannot "no adduser: the postinst cannot run"
else
	ns_dir="$work/ns"
	mkdir -p "$ns_dir/out"
	cp -a "$work/ctrl" "$ns_dir/ctrl"
	cp -a "$x/etc" "$ns_dir/pkg-etc"
	cp "$unit" "$ns_dir/pkg-unit"
	# Runs as root inside `unshare --mount`: nothing it mounts is seen outside, and it runs no
	# maintainer script before /etc, /var and /run are private copies.
	cat >"$ns_dir/run.sh" <<'EOF'
set -eu
w=$1 version=$2
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DPKG_MAINTSCRIPT_PACKAGE=ilp-router DPKG_MAINTSCRIPT_ARCH="$3"
# A copy of /etc without any ilp-router user or group, plus the package's /etc as dpkg
# unpacks it (root, the modes of the .deb).
cp -a /etc "$w/etc"
for f in passwd group shadow gshadow; do
	if [ -f "$w/etc/$f" ]; then sed -i '/^ilp-router:/d' "$w/etc/$f"; fi
done
rm -rf "$w/etc/ilp-router" "$w/etc/default/ilp-router"
cp -a "$w/pkg-etc/." "$w/etc/"
touch "$w/etc/.check-deb-copy"
# The unit where the package puts it, in a copy of the unit directory, so that
# deb-systemd-helper finds it as on a real install.
units=/usr/lib/systemd/system
if [ -d "$units" ]; then
	mkdir "$w/units"
	cp -a "$units/." "$w/units/"
	cp "$w/pkg-unit" "$w/units/ilp-router.service"
fi
# /run first (it hides /run/systemd/system, so the systemd snippets leave a running systemd
# alone), with the work dir bound into it, which stays reachable when /var is replaced.
mount -t tmpfs tmpfs /run
mkdir /run/w
mount --bind "$w" /run/w
w=/run/w
mount --bind "$w/etc" /etc
mount -t tmpfs tmpfs /var
mkdir -p /var/lib/dpkg /var/log /var/tmp
: >/var/lib/dpkg/statoverride
[ -e /etc/.check-deb-copy ] && mountpoint -q /etc && mountpoint -q /var && mountpoint -q /run || {
	echo "private /etc, /var or /run not in place: nothing run" >&2
	exit 3
}
if [ -d "$w/units" ]; then
	mount --bind "$w/units" "$units"
	echo yes >"$w/out/units"
fi

step() { # step <name> <script> <args...>: runs it, its output to out/<name>.log, rc to out/<name>.rc
	name=$1 script=$2
	shift 2
	rc=0
	DPKG_MAINTSCRIPT_NAME=$script "$w/ctrl/$script" "$@" >"$w/out/$name.log" 2>&1 || rc=$?
	echo "$rc" >"$w/out/$name.rc"
}
record() { # record <suffix>
	getent passwd ilp-router >"$w/out/passwd$1" || true
	getent group ilp-router >"$w/out/group$1" || true
	grep -c '^ilp-router:' /etc/passwd >"$w/out/passwd-count$1" || true
	stat -c '%U:%G %a' /var/lib/ilp-router >"$w/out/state$1" 2>/dev/null || echo missing >"$w/out/state$1"
	stat -c '%U:%G %a' /etc/ilp-router/ilp-router.toml >"$w/out/config$1" 2>/dev/null || echo missing >"$w/out/config$1"
	if [ -L /etc/systemd/system/multi-user.target.wants/ilp-router.service ]; then echo enabled; else echo "not enabled"; fi >"$w/out/enabled$1"
	readlink /etc/systemd/system/ilp-router.service >"$w/out/mask$1" || echo "not masked" >"$w/out/mask$1"
}

# First install: dpkg runs `postinst configure ''`.
step install postinst configure ""
record 1
# An upgrade, with an admin's statoverride on the config (dpkg applies it on unpack).
dpkg-statoverride --add root root 0600 /etc/ilp-router/ilp-router.toml
chown root:root /etc/ilp-router/ilp-router.toml
chmod 0600 /etc/ilp-router/ilp-router.toml
step upgrade postinst configure "$version"
record 2
# An upgrade after the admin deleted the config (a conffile: dpkg leaves it deleted).
dpkg-statoverride --remove /etc/ilp-router/ilp-router.toml
rm /etc/ilp-router/ilp-router.toml
step upgrade-no-config postinst configure "$version"
step prerm-remove prerm remove
# dpkg removes the files (but conffiles) between prerm and postrm.
if [ -d "$w/units" ]; then rm "$units/ilp-router.service"; fi
step postrm-remove postrm remove
record 3
step postrm-purge postrm purge
record 4
EOF
	sums_before=$(md5sum /etc/passwd /etc/group)
	var_lib_before=$([ -e /var/lib/ilp-router ] && echo present || echo absent)
	ns_rc=0
	$ns_priv unshare --mount --propagation private sh "$ns_dir/run.sh" "$ns_dir" "$version-1" "$arch" || ns_rc=$?
	o="$ns_dir/out"
	rd() { cat "$o/$1" 2>/dev/null || echo "(none)"; }
	if [ "$ns_rc" != 0 ]; then
		fail "maintainer scripts: expected the namespace run to finish, found exit $ns_rc"
	else
		for s in install upgrade upgrade-no-config prerm-remove postrm-remove postrm-purge; do
			if [ "$(rd "$s.rc")" = 0 ]; then ok "$s: exit 0"; else fail "$s: expected exit 0, found $(rd "$s.rc"): $(rd "$s.log")"; fi
		done
		# ilp-router:x:UID:GID:GECOS:HOME:SHELL
		IFS=: read -r _ _ uid gid _ home shell <<<"$(rd passwd1)" || true
		if [ -n "${uid:-}" ] && [ "$uid" -lt 1000 ] 2>/dev/null; then ok "user ilp-router made, a system uid ($uid)"; else fail "user ilp-router: expected a system user (uid below 1000), found '$(rd passwd1)'"; fi
		expect "user ilp-router's home" "/var/lib/ilp-router" "${home:-}"
		case "${shell:-}" in
		*/nologin | */false) ok "user ilp-router has no login shell (${shell})" ;;
		*) fail "user ilp-router's shell: expected nologin or false, found '${shell:-}'" ;;
		esac
		IFS=: read -r _ _ group_gid _ <<<"$(rd group1)" || true
		expect "group ilp-router is the user's primary group" "${gid:-?}" "${group_gid:-none}"
		expect "/var/lib/ilp-router after install" "ilp-router:ilp-router 750" "$(rd state1)"
		expect "/etc/ilp-router/ilp-router.toml after install" "root:ilp-router 640" "$(rd config1)"
		expect "users named ilp-router after an upgrade" "1" "$(rd passwd-count2)"
		expect "/var/lib/ilp-router after an upgrade" "ilp-router:ilp-router 750" "$(rd state2)"
		expect "the config after an upgrade, with a statoverride root root 0600" "root:root 600" "$(rd config2)"
		expect "/var/lib/ilp-router after purge (the balances are kept)" "ilp-router:ilp-router 750" "$(rd state4)"
		if [ "$(rd units)" = yes ]; then
			expect "the unit after install" "not enabled" "$(rd enabled1)"
			expect "the unit after remove (masked)" "/dev/null" "$(rd mask3)"
			expect "the unit after purge" "not masked" "$(rd mask4)"
		else
			cannot "no /usr/lib/systemd/system here: the unit's enable and mask state not checked"
		fi
		if grep -q 'kept /var/lib/ilp-router' "$o/postrm-purge.log" 2>/dev/null; then ok "purge says the state directory was kept"; else fail "postrm purge: expected a note that /var/lib/ilp-router was kept, found: $(rd postrm-purge.log)"; fi
	fi
	if [ "$sums_before" = "$(md5sum /etc/passwd /etc/group)" ]; then
		ok "/etc/passwd and /etc/group of this machine unchanged"
	else
		fail "/etc/passwd and /etc/group of this machine: expected unchanged, found changed"
	fi
	expect "/var/lib/ilp-router of this machine" "$var_lib_before" "$([ -e /var/lib/ilp-router ] && echo present || echo absent)"
fi

finish
