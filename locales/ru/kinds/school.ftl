# Школа (business.kind = "school"): термины поверх встроенных текстов салона.
# Падежи те же, что в ../main.ftl.

-master = { $case ->
   *[nom] преподаватель
    [gen] преподавателя
    [acc] преподавателя
    [dat] преподавателю
    [pl-gen] преподавателей
    [label] Преподаватель
}
-service = { $case ->
   *[nom] курс
    [acc] курс
    [pl-gen] курсов
    [label] Курс
}
-visit = { $case ->
   *[nom] занятие
    [gen] занятия
    [acc] занятие
    [dat] занятию
}
-place = { $case ->
   *[nom] школа
    [gen] школы
    [acc] школу
    [ins] школой
    [label] Школа
}
    .gender = feminine
