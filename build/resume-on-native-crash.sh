# Sourced by ./ra. A long `ra train` run can die of a fault inside TorchSharp/libtorch (a corrupt
# scalar argument, about once an hour of training here: `ra train` then exits 75, see MODEL_CARD),
# or of a native abort. The run writes a checkpoint every 100 steps and resumes from its output
# folder, so the same command is simply run again. Nothing else is retried: a user error (exit 2),
# a failure (1) or Ctrl-C (130) ends it at once.
#   run_resuming CMD ARGS...   runs CMD, at most RA_NATIVE_RETRIES (default 3) times more
run_resuming() {
  local retries="${RA_NATIVE_RETRIES:-3}" attempt=0 rc
  while :; do
    set +e; "$@"; rc=$?; set -e
    case $rc in
      75|134|136|139) ;;    # the known transient fault; SIGABRT, SIGFPE, SIGSEGV
      *) return $rc ;;
    esac
    if [ "$attempt" -ge "$retries" ]; then
      printf 'ra: still failing in native code (exit %s) after %s retries; giving up\n' "$rc" "$retries" >&2
      return $rc
    fi
    attempt=$((attempt + 1))
    printf 'ra: failed in native code (exit %s); running it again, which resumes from the last checkpoint (retry %s of %s)\n' \
      "$rc" "$attempt" "$retries" >&2
  done
}
