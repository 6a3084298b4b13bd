#!/usr/bin/env bash
# Generate the committed multi-speaker corpus in tests/data/corpus/ with espeak-ng + sox.
#   apt-get update && apt-get install -y espeak-ng sox
#   scripts/make_corpus_fixtures.sh
# 8 espeak-ng voices, each with its own pitch and speed, are the "speakers"; each says 5
# sentences (40 clips).  A clip is espeak-ng speech (22.05 kHz) resampled by sox (`rate -v`,
# no dither) to 16 kHz mono int16, with its leading and trailing silence trimmed and 0.1 s of
# silence put back at each end; the script fails if a clip is not 1-3 s long.
# It writes, beside wav/:
#   wav.scp               <key> <path>  (key <speaker>-<utt>; path relative to wav.scp's folder)
#   utt2spk               <key> <speaker>
#   trials.txt            VoxCeleb: 1|0 <enroll> <test>
#   trials_wespeaker.txt  WeSpeaker: <enroll> <test> target|nontarget  (the same trials)
# Trials: every same-speaker pair of different utterances is a target trial; non-targets are
# the 3x as many different-speaker pairs whose md5 of "<enroll> <test>" sorts first.  Both
# files are sorted by enroll, then test key (LC_ALL=C).  Output is byte-identical across runs
# with the same espeak-ng / sox versions (made with espeak-ng 1.51, SoX 14.4.2).
set -euo pipefail
export LC_ALL=C
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/tests/data/corpus"
for tool in espeak-ng sox soxi md5sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox" >&2; exit 1; }
done
rm -rf "$out"
mkdir -p "$out/wav"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# speaker  voice     pitch wpm  language of its sentences
speakers=(
    "enm1  en+m1     45 175 en"
    "enm3  en+m3     58 165 en"
    "enf2  en+f2     62 170 en"
    "enf4  en+f4     48 180 en"
    "usm7  en-us+m7  38 160 en"
    "de    de        50 165 de"
    "fr    fr        55 175 fr"
    "es    es        44 170 es"
)
en=("The birch canoe slid on the smooth planks." "Rice is often served in round bowls."
    "Glue the sheet to the dark blue background." "The juice of lemons makes fine punch."
    "Help the woman get back to her feet.")
de=("Guten Morgen, wie geht es dir heute?" "Das Wetter ist heute sehr schön."
    "Ich trinke gern einen heißen Tee." "Der Zug fährt um acht Uhr ab." "Wir gehen am Abend ins Kino.")
fr=("Bonjour, comment allez-vous aujourd'hui?" "Le chat dort sur le canapé." "Il fait très beau ce matin."
    "Nous allons au marché demain." "J'aime lire un bon livre le soir.")
es=("Buenos días, ¿cómo estás hoy?" "El perro corre por el parque." "Me gusta mucho el café con leche."
    "Mañana vamos a la playa." "La casa tiene un jardín grande.")

# clip SPEAKER UTT VOICE PITCH WPM TEXT
clip() {
    local spk=$1 utt=$2 voice=$3 pitch=$4 wpm=$5 text=$6
    local raw="$tmp/${spk}_$utt.wav" wav="$out/wav/${spk}_$utt.wav"
    espeak-ng -b 1 -v "$voice" -p "$pitch" -s "$wpm" -w "$raw" "$text"
    sox -D -R -V1 "$raw" -r 16000 -c 1 -b 16 -e signed-integer "$wav" rate -v 16000 \
        silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse pad 0.1 0.1
    local n
    n=$(soxi -s "$wav")
    if (( n < 16000 || n > 48000 )); then
        echo "$wav: $n samples at 16 kHz; expected 1-3 s (16000-48000): change the speed of $spk" >&2
        exit 1
    fi
    printf '%s-%s wav/%s_%s.wav\n' "$spk" "$utt" "$spk" "$utt" >>"$tmp/wav.scp"
    printf '%s-%s %s\n' "$spk" "$utt" "$spk" >>"$tmp/utt2spk"
}

for row in "${speakers[@]}"; do
    read -r spk voice pitch wpm lang <<<"$row"
    declare -n texts="$lang"
    for i in 0 1 2 3 4; do
        clip "$spk" "u$((i + 1))" "$voice" "$pitch" "$wpm" "${texts[$i]}"
    done
    unset -n texts
done
sort "$tmp/wav.scp" >"$out/wav.scp"
sort "$tmp/utt2spk" >"$out/utt2spk"

# Every unordered pair of keys (enroll < test): "1" when the speakers match, else "0".
mapfile -t keys < <(cut -d' ' -f1 "$out/wav.scp")
for ((a = 0; a < ${#keys[@]}; a++)); do
    for ((b = a + 1; b < ${#keys[@]}; b++)); do
        e=${keys[a]} t=${keys[b]}
        if [[ ${e%%-*} == "${t%%-*}" ]]; then
            echo "1 $e $t" >>"$tmp/targets"
        else
            echo "$(printf '%s %s' "$e" "$t" | md5sum | cut -c1-32) 0 $e $t" >>"$tmp/pairs"
        fi
    done
done
n_nontarget=$(( 3 * $(wc -l <"$tmp/targets") ))
sort "$tmp/pairs" | head -n "$n_nontarget" | cut -d' ' -f2- >"$tmp/nontargets"
sort -k2,2 -k3,3 "$tmp/targets" "$tmp/nontargets" >"$out/trials.txt"
awk '{print $2, $3, ($1 == "1" ? "target" : "nontarget")}' "$out/trials.txt" >"$out/trials_wespeaker.txt"

echo "$(wc -l <"$out/wav.scp") clips, $(wc -l <"$out/trials.txt") trials" \
     "($(grep -c '^1 ' "$out/trials.txt") target), $(du -sb "$out" | cut -f1) bytes in $out"
