# Клиника (business.kind = "clinic"): термины поверх встроенных текстов салона.
# Падежи те же, что в ../main.ftl.

-master = { $case ->
   *[nom] врач
    [gen] врача
    [acc] врача
    [dat] врачу
    [pl-gen] врачей
    [label] Врач
}
-service = { $case ->
   *[nom] услуга
    [acc] услугу
    [pl-gen] услуг
    [label] Услуга
}
-visit = { $case ->
   *[nom] приём
    [gen] приёма
    [acc] приём
    [dat] приёму
}
-place = { $case ->
   *[nom] клиника
    [gen] клиники
    [acc] клинику
    [ins] клиникой
    [label] Клиника
}
    .gender = feminine
