#!/usr/bin/env bash
# Generate the committed speech fixtures in tests/data/ with espeak-ng + sox.
#   apt-get update && apt-get install -y espeak-ng sox
#   scripts/make_audio_fixtures.sh
# Each clip is espeak-ng speech (22.05 kHz) resampled by sox (`rate -v`, no dither), padded
# with trailing silence and cut to an exact sample count.  The script refuses to cut speech:
# a text that does not fit its duration is an error.  Output is byte-identical across runs
# with the same espeak-ng / sox versions (tested with espeak-ng 1.51, SoX 14.4.2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/tests/data"
for tool in espeak-ng sox soxi; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox" >&2; exit 1; }
done
mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# clip NAME VOICE WPM RATE SAMPLES TEXT [extra sox output options and effects...]
clip() {
    local name=$1 voice=$2 wpm=$3 rate=$4 samples=$5 text=$6
    shift 6
    local raw="$tmp/$name.wav"
    espeak-ng -v "$voice" -s "$wpm" -w "$raw" "$text"
    local src_rate src_n
    src_rate=$(soxi -r "$raw")
    src_n=$(soxi -s "$raw")
    if (( src_n * rate > samples * src_rate )); then
        echo "$name: speech is $src_n samples at $src_rate Hz, longer than $samples at $rate Hz;" \
             "raise the words per minute or the sample count" >&2
        exit 1
    fi
    local opts=() effects=()
    while (( $# )) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
    (( $# )) && shift
    effects=("$@")
    sox -D -R -V1 "$raw" -r "$rate" "${opts[@]}" "$out/$name.wav" \
        rate -v "$rate" "${effects[@]}" pad 0 10 trim 0 "${samples}s"
}

mono16=(-c 1 -b 16 -e signed-integer)

# 16 kHz mono int16 speech: two English voices (en+m3, en+f2) with 2+ sentences each, one German.
clip speech_en_m3_0p5s   en+m3 230 16000   8000 "Hello." "${mono16[@]}"
clip speech_en_m3_1p01s  en+m3 220 16000  16160 "Yes, thank you." "${mono16[@]}"   # 101 frames of 10 ms
clip speech_en_m3_2s     en+m3 210 16000  32000 "The birch canoe slid on the smooth planks." "${mono16[@]}"
clip speech_en_m3_3s     en+m3 160 16000  48000 "Glue the sheet to the dark blue background." "${mono16[@]}"
clip speech_en_f2_2s     en+f2 200 16000  32000 "Rice is often served in round bowls." "${mono16[@]}"
clip speech_en_f2_3s     en+f2 150 16000  48000 "The juice of lemons makes fine punch." "${mono16[@]}"
clip speech_de_2s        de    190 16000  32000 "Guten Morgen, wie geht es dir heute?" "${mono16[@]}"
clip speech_en_f2_slow_8s en+f2 100 16000 128000 \
    "These days a chicken leg is a rare dish. Four hours of steady work faced us." "${mono16[@]}"

# Format coverage: stereo 44.1 kHz (right = left * 0.5), 8 kHz mono, and the same
# 16 kHz sentence as int16 and float32 PCM.
clip speech_stereo_44k   en+f2 240 44100  33075 "Come here." -c 2 -b 16 -e signed-integer -- remix 1 1v0.5
clip speech_8k           en+m3 190  8000  16000 "Help the woman get back to her feet." "${mono16[@]}"
clip speech_int16        en+m3 250 16000  16000 "Kick the ball straight." "${mono16[@]}"
clip speech_float32      en+m3 250 16000  16000 "Kick the ball straight." -c 1 -b 32 -e floating-point

du -cb "$out"/speech_*.wav | tail -1
