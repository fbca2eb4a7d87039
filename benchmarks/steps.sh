# Sourced by the device scripts (gpu_check.sh, gpu_train.sh): each part of a call runs under its own time limit and
# leaves one JSON line in $OUT/steps.jsonl, so one slow part cannot eat the others' time and the record says which.
status=0

step() {  # step NAME SECONDS COMMAND...: run it, record its exit status and time; returns the command's status
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@"
    local rc=$?
    echo "{\"step\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start))}" >> "$OUT/steps.jsonl"
    [ "$rc" -eq 0 ] || status=1
    return "$rc"
}
