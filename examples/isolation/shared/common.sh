# shellcheck shell=bash
# Shared by the isolation hook examples (netns/ and bridge-vlan/): sourced, not run.
#
# cinode runs each hook as an argv list without a shell, with CINODE_PROJECT, CINODE_SSID,
# CINODE_ALIAS, the node hooks' CINODE_HOSTNAME, CINODE_IP and CINODE_POOL, and, after the setup,
# CINODE_SESSION_DATA: the JSON object the setup printed as the last line of its stdout (see
# ../README.md). On a non-zero exit cinode shows the last line of stderr, so every failure here
# ends with one line that says what went wrong and for which session or node.
#
# What this file gives the hooks:
#   hook_start NAME          names the hook in messages, and checks the variables it needs
#   log MSG / die MSG        a line on stderr (die: and exit 1)
#   session_field KEY        a string or number field of CINODE_SESSION_DATA (empty when absent)
#   session_tag              a short, stable name for the session, derived from CINODE_SSID
#   slot_claim KIND FIRST LAST OWNER  the owner's slot of a numbered range, claimed if it has none
#   slot_of KIND OWNER       the owner's slot, or nothing
#   slot_release KIND OWNER  frees the owner's slot (if it has one)
#   slots_forget KIND        frees every slot of KIND (a session's own kind, at its teardown)
#   ipv4_to_int / int_to_ipv4 / cidr_split   IPv4 arithmetic for subnet allocation
#
# Slots live in a state folder (CINODE_ISOLATION_STATE), one file per claimed slot holding its
# owner, and every claim or release holds an flock on the folder's lock file: two setups that
# run at once never get the same subnet or VLAN, and a hook run again after a crash finds the slot
# it claimed the first time.

hook_name=${hook_name:-isolation}

log() {
  printf '%s: %s\n' "$hook_name" "$*" >&2
}

die() {
  log "$*"
  exit 1
}

# hook_start NAME VAR... : every hook says who it is and what it needs first.
hook_start() {
  hook_name=$1
  shift
  local var
  for var in CINODE_SSID "$@"; do
    if [ -z "${!var:-}" ]; then
      die "$var is not set: this script is an isolation hook that cinode runs (see examples/isolation/README.md)"
    fi
  done
}

# session_field KEY: the value of "KEY" in CINODE_SESSION_DATA. The object is the one our own
# setup printed (flat: strings and numbers), possibly re-serialized by cinode with other spacing,
# so a pattern is enough and no JSON tool is needed on the host.
session_field() {
  local key=$1 data=${CINODE_SESSION_DATA:-}
  local string_value="\"$key\"[[:space:]]*:[[:space:]]*\"([^\"]*)\""
  local number_value="\"$key\"[[:space:]]*:[[:space:]]*(-?[0-9]+)"
  if [[ $data =~ $string_value ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  elif [[ $data =~ $number_value ]]; then
    printf '%s\n' "${BASH_REMATCH[1]}"
  fi
}

# session_tag: the session's short name in the kernel (namespace names). Derived from the ssid
# alone, so that a teardown that runs after a failed or crashed setup (CINODE_SESSION_DATA is
# then `{}`) still finds what the setup created.
session_tag() {
  printf '%s' "$CINODE_SSID" | sha256sum | cut -c1-10
}

state_dir() {
  local dir=${CINODE_ISOLATION_STATE:-/var/lib/cinode-isolation}
  mkdir -p "$dir" || die "cannot create the state folder $dir (set CINODE_ISOLATION_STATE)"
  printf '%s\n' "$dir"
}

# with_state_lock CMD...: runs CMD holding the state folder's lock (waits at most 30 s for it).
with_state_lock() {
  local dir lock_fd
  dir=$(state_dir)
  exec {lock_fd}>"$dir/lock"
  if ! flock -w 30 "$lock_fd"; then
    die "could not lock $dir/lock within 30 s (another hook holds it)"
  fi
  local status=0
  "$@" || status=$?
  exec {lock_fd}>&-
  return "$status"
}

# A slot is a file KIND/N whose content is its owner (an ssid, or ssid/hostname).
_slot_find() {
  local kind=$1 owner=$2 dir file
  dir="$(state_dir)/$kind"
  [ -d "$dir" ] || return 0
  for file in "$dir"/*; do
    [ -f "$file" ] || continue
    if [ "$(cat "$file")" = "$owner" ]; then
      basename "$file"
      return 0
    fi
  done
}

_slot_claim_locked() {
  local kind=$1 first=$2 last=$3 owner=$4 dir slot
  slot=$(_slot_find "$kind" "$owner")
  if [ -n "$slot" ]; then
    printf '%s\n' "$slot"
    return 0
  fi
  dir="$(state_dir)/$kind"
  mkdir -p "$dir"
  for ((slot = first; slot <= last; slot++)); do
    if [ ! -e "$dir/$slot" ]; then
      printf '%s\n' "$owner" >"$dir/$slot.tmp"
      mv "$dir/$slot.tmp" "$dir/$slot"
      printf '%s\n' "$slot"
      return 0
    fi
  done
  return 2
}

_slot_release_locked() {
  local kind=$1 owner=$2 slot
  slot=$(_slot_find "$kind" "$owner")
  if [ -n "$slot" ]; then
    rm -f "$(state_dir)/$kind/$slot"
  fi
}

slot_claim() {
  local kind=$1 first=$2 last=$3 owner=$4 slot status=0
  slot=$(with_state_lock _slot_claim_locked "$kind" "$first" "$last" "$owner") || status=$?
  case $status in
    0) printf '%s\n' "$slot" ;;
    2) die "no free $kind slot left in $first..$last for $owner (all are held; see $(state_dir)/$kind)" ;;
    *) exit "$status" ;; # with_state_lock said why
  esac
}

slot_of() {
  with_state_lock _slot_find "$1" "$2"
}

_slots_forget_locked() {
  rm -rf "$(state_dir)/${1:?}"
}

slot_release() {
  with_state_lock _slot_release_locked "$1" "$2"
}

slots_forget() {
  with_state_lock _slots_forget_locked "$1"
}

# IPv4 arithmetic, for cutting a range (10.200.0.0/16) into subnets (/24).
ipv4_to_int() {
  local a b c d
  IFS=. read -r a b c d <<<"$1"
  printf '%s\n' $(((a << 24) | (b << 16) | (c << 8) | d))
}

int_to_ipv4() {
  local n=$1
  printf '%s.%s.%s.%s\n' $(((n >> 24) & 255)) $(((n >> 16) & 255)) $(((n >> 8) & 255)) $((n & 255))
}

# cidr_split A.B.C.D/N: prints "network-as-int prefix-length", or dies on a malformed value.
cidr_split() {
  local cidr=$1 what=$2
  local pattern='^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})/([0-9]{1,2})$'
  if ! [[ $cidr =~ $pattern ]]; then
    die "$what is '$cidr': expected an IPv4 network like 10.200.0.0/16"
  fi
  local i
  for i in 1 2 3 4; do
    [ "${BASH_REMATCH[$i]}" -le 255 ] || die "$what is '$cidr': ${BASH_REMATCH[$i]} is not an IPv4 byte"
  done
  local length=${BASH_REMATCH[5]}
  [ "$length" -le 32 ] || die "$what is '$cidr': the prefix length must be at most 32"
  local address mask
  address=$(ipv4_to_int "${cidr%/*}")
  mask=$(((0xffffffff << (32 - length)) & 0xffffffff))
  printf '%s %s\n' $((address & mask)) "$length"
}

# int_in_range VALUE FIRST LAST WHAT: checks a number setting.
int_in_range() {
  local value=$1 first=$2 last=$3 what=$4
  if ! [[ $value =~ ^[0-9]+$ ]] || [ "$value" -lt "$first" ] || [ "$value" -gt "$last" ]; then
    die "$what is '$value': expected a whole number from $first to $last"
  fi
}
