# Bash completion for srl: subcommands, their options and option values,
# request files, and the names of the requests controld runs (for show, rm
# and stats, asked of the daemon with `srl ls -q`).
# shellcheck shell=bash

# The command line with "--option=value" as one word, whether or not bash
# split it at the "=": sets _srl_words and _srl_cword.
_srl_join_words() {
  local i w glue=0
  _srl_words=()
  _srl_cword=0
  for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == = && ${#_srl_words[@]} -gt 0 && ${_srl_words[-1]} == --* ]]; then
      _srl_words[-1]+="="
      glue=1
    elif ((glue)); then
      _srl_words[-1]+=$w
      glue=0
    else
      _srl_words+=("$w")
    fi
    ((i == COMP_CWORD)) && _srl_cword=$((${#_srl_words[@]} - 1))
  done
}

# The names controld knows, asked on the socket the command line gives, if
# any; nothing (and no message) when the daemon cannot be reached.
_srl_request_names() {
  local i socket=()
  for ((i = 2; i < ${#_srl_words[@]}; i++)); do
    case ${_srl_words[i]} in
    --socket) socket=(--socket "${_srl_words[i + 1]}") ;;
    --socket=*) socket=("${_srl_words[i]}") ;;
    esac
  done
  "${_srl_words[0]}" ls -q "${socket[@]}" 2>/dev/null
}

_srl_devices() {
  local d
  for d in /sys/class/net/*; do
    [[ -e $d ]] && printf '%s\n' "${d##*/}"
  done
}

# Sets COMPREPLY to compgen's words, one a line (file names may hold spaces).
_srl_reply() {
  mapfile -t COMPREPLY < <(compgen "$@")
}

# Sets COMPREPLY to the files starting with $1, or the directories with -d.
_srl_files() {
  local kind=-f
  if [[ $1 == -d ]]; then
    kind=-d
    shift
  fi
  compopt -o filenames 2>/dev/null
  _srl_reply "$kind" -- "$1"
}

_srl() {
  local _srl_words _srl_cword
  _srl_join_words
  local cur=${_srl_words[_srl_cword]} prev=${_srl_words[_srl_cword - 1]}
  local commands="run plan spaces calibrate filters apply ls show rm stats"

  # The subcommand: the first word after srl that is not an option.
  local i at=0 command=""
  for ((i = 1; i < _srl_cword; i++)); do
    if [[ ${_srl_words[i]} != -* ]]; then
      command=${_srl_words[i]}
      at=$i
      break
    fi
  done
  if [[ -z $command ]]; then
    _srl_reply -W "$commands -h --help" -- "$cur"
    return
  fi

  # Per subcommand: flags, options that take a value, and what the
  # positional arguments are (files, request names, or none).
  local model="--dev --model --profile --cpus"
  local daemon="--socket --tls-ca --tls-cert --tls-key"
  local flags="" valued="" positional=""
  case $command in
  run)
    flags="-j --json -h --help"
    valued="-e --expr --dev --duration --interval --xdp-mode --hook --bpffs --cache --workers --batch"
    positional="file"
    ;;
  plan)
    flags="--no-profile --no-parallel -j --json --dot -h --help"
    valued="-e --expr $model --objective --mix-weight --rate --bytes --time-limit --max-replicas -n --name $daemon"
    positional="file"
    ;;
  spaces)
    flags="--no-profile -j --json -h --help"
    valued="$model --save $daemon"
    ;;
  calibrate)
    flags="--no-bpf --no-filters -n --dry-run -j --json -h --help"
    valued="-o --output --seconds --cache"
    ;;
  filters)
    flags="-j --json -h --help"
    valued="$daemon"
    ;;
  apply)
    flags="--replace -j --json -h --help"
    valued="-e --expr -n --name --dev $daemon"
    positional="file"
    ;;
  ls)
    flags="-q --quiet -j --json -h --help"
    valued="$daemon"
    ;;
  show | rm)
    flags="-j --json -h --help"
    valued="$daemon"
    positional="request"
    ;;
  stats)
    flags="-w --watch -j --json -h --help"
    valued="--interval $daemon"
    positional="request"
    ;;
  *)
    return
    ;;
  esac

  # An option's value: after the option, or after "--option=". Bash replaces
  # only the text after the "=" when "=" breaks words (the default).
  local option="" value=$cur prefix=""
  if [[ $cur == --*=* ]]; then
    option=${cur%%=*}
    value=${cur#*=}
    [[ $COMP_WORDBREAKS == *=* ]] || prefix="$option="
  elif [[ " $valued " == *" $prev "* ]]; then
    option=$prev
  fi
  if [[ -n $option ]]; then
    case $option in
    --dev) _srl_reply -W "$(_srl_devices)" -- "$value" ;;
    --xdp-mode) _srl_reply -W "auto native generic" -- "$value" ;;
    --hook) _srl_reply -W "auto xdp tc" -- "$value" ;;
    --objective) _srl_reply -W "cost throughput mix" -- "$value" ;;
    --model | --profile | --save | -o | --output | --socket | --tls-ca | --tls-cert | --tls-key)
      _srl_files "$value"
      ;;
    --bpffs | --cache) _srl_files -d "$value" ;;
    *) COMPREPLY=() ;; # a number, a name or request text: nothing to offer
    esac
    if [[ -n $prefix ]]; then
      for i in "${!COMPREPLY[@]}"; do
        COMPREPLY[i]=$prefix${COMPREPLY[i]}
      done
    fi
    return
  fi

  if [[ $cur == -* ]]; then
    _srl_reply -W "$flags $valued" -- "$cur"
    return
  fi
  case $positional in
  file) _srl_files "$cur" ;;
  request)
    # show and stats take one name, rm any number.
    local n=0
    for ((i = at + 1; i < _srl_cword; i++)); do
      [[ ${_srl_words[i]} == -* ]] && continue
      [[ " $valued " == *" ${_srl_words[i - 1]} "* ]] && continue
      ((n++))
    done
    if [[ $command == rm || $n -eq 0 ]]; then
      local IFS=$'\n'
      _srl_reply -W "$(_srl_request_names)" -- "$cur"
    fi
    ;;
  esac
}

complete -F _srl srl
