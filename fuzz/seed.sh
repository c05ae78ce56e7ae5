#!/usr/bin/env bash
# Fills fuzz/corpus/<target>/ with the vendors' verbatim payloads (../shared/contracts), the
# committed binary seeds (fuzz/seeds) and a few hand-written inputs, the same seeds
# tests/fuzz_smoke.rs starts from. Run from anywhere; existing corpus files are kept.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
contracts="${CONTRACTS:-$repo/../shared/contracts}"
corpus="$here/corpus"

put() { # put <target> <file>...
  local target="$1"; shift
  mkdir -p "$corpus/$target"
  for f in "$@"; do
    [ -f "$f" ] && cp "$f" "$corpus/$target/$(basename "$f")"
  done
}
say() { # say <target> <name> <text>
  mkdir -p "$corpus/$1"
  printf '%b' "$3" >"$corpus/$1/$2"
}

for dir in "$here"/seeds/*/; do
  put "$(basename "$dir")" "$dir"*
done
put yclients_webhook "$contracts"/yclients/*webhook*
put amocrm_webhook "$contracts"/amocrm/webhook*
put bitrix24_event "$contracts"/bitrix24/event*
put max_update "$contracts"/max/*update* "$contracts"/max/*webhook*
put telegram_update "$contracts"/telegram/get-updates*
put dikidi_answer "$contracts"/dikidi/*.json "$repo"/tests/fixtures/dikidi/*.json
put commerceml_document "$contracts"/onec/*.xml
put config "$repo/zapis.example.toml"
say bitrix24_event form 'event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=42&ts=1700000000&auth%5Bapplication_token%5D=fuzz-application-token'
say getcourse_notice paid 'status=payed&id=1017&number=55&email=Anna%40Example.ru&phone=%2B7%20916%20123-45-67&payed_money=4990.50&offers=PY-1\n'
say getcourse_notice body 'status=Оплачен&number=7\nphone=89161234567&cost_money=1 000,00&positions=English'
say form_post urlencoded '\x00203.0.113.9, 10.0.0.2\nname=%D0%90%D0%BD%D0%BD%D0%B0&phone=%2B79161234567&email=anna%40example.ru&course=python&group=7&trial=on'
say form_post json '\x03[2001:db8::1]:443\n{"name":"Anna","phone":"8 916 123-45-67","course":"english","trial":true,"group_id":8}'
say import_csv semicolons 'ФИО;Телефон;Email;Дата рождения\nИванова Анна;+7 916 123-45-67, 8(495)1234567 доб. 12;anna@mail.ru;01.02.1990\n'
say import_csv commas 'name,phone,email\nAnna,79161234567,ANNA@EXAMPLE.RU\n'
say phone plus '+7 (916) 123-45-67'
say phone extension '8 916 123 45 67 доб. 123'
say phone two '79161234567 89161234568'
say email idn 'почта@пример.рф'
say email typo 'petr@gmial.com'
say email birthday '31.12.1999'
for t in "$corpus"/*/; do
  printf '%-22s %s seeds\n' "$(basename "$t")" "$(ls "$t" | wc -l)"
done
