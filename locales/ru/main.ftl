# Тексты бота записи. Ключи должны совпадать с locales/en/main.ftl (это проверяет тест).

## Слова, которые зависят от вида бизнеса (business.kind). Здесь — салон; клиника и школа
## переопределяют эти термины в kinds/clinic.ftl и kinds/school.ftl.
## Падежи: nom — кто, gen — кого/чего, acc — кого/что, dat — кому, ins — кем, pl-gen — кого (мн.),
## label — с заглавной, для подписи в карточке записи.

-master = { $case ->
   *[nom] мастер
    [gen] мастера
    [acc] мастера
    [dat] мастеру
    [pl-gen] мастеров
    [label] Мастер
}
-service = { $case ->
   *[nom] услуга
    [acc] услугу
    [pl-gen] услуг
    [label] Услуга
}
-visit = { $case ->
   *[nom] визит
    [gen] визита
    [acc] визит
    [dat] визиту
}
-place = { $case ->
   *[nom] салон
    [gen] салона
    [acc] салон
    [ins] салоном
    [label] Салон
}
    .gender = masculine

## Меню и справка

greeting =
    Здравствуйте! Это бот записи в { $business }.
    Здесь можно записаться на { -service(case: "acc") }, посмотреть свои записи, отменить или перенести их.
menu = Главное меню. Чем помочь?
help =
    { $business }: запись онлайн.

    «Записаться» — выбрать { -service(case: "acc") }, { -master(case: "acc") }, день и время.
    «Мои записи» — посмотреть, отменить или перенести запись.

    Команды: /book — записаться, /my — мои записи, /menu — меню, /cancel — прервать текущий шаг.

    Адрес: { $address }{ $phone }
help-phone = {"\u000A"}Телефон: { $phone }

btn-book = 📅 Записаться
btn-my = 🗂 Мои записи
btn-help = ❓ Помощь
btn-data = 👤 Мои данные
btn-menu = 🏠 Меню
btn-back = ← Назад
btn-retry = 🔄 Повторить
btn-prev = ← Назад по списку
btn-next = Ещё →

## Заметки над экраном

note-hint = Пожалуйста, выберите вариант кнопкой ниже.
note-unknown-command = Такой команды нет. Команды: /book, /my, /menu, /help, /cancel.
note-stale = Эта кнопка из старого сообщения. Вот актуальный шаг:
note-slot-taken = Извините, это время только что заняли. Выберите другое:
note-bad-phone = Не получилось распознать номер. Напишите его, например: +7 912 345-67-89
note-name-empty = Имя не может быть пустым.
note-name-long = Слишком длинное имя: не больше 100 символов.
note-name-not-a-name = Это не похоже на имя. Напишите, как к вам обращаться, буквами, например: Анна.
note-not-found = Этого уже нет в списке, вот актуальный.
note-flow-cancelled = Хорошо, отменили.
note-booking-dropped = Хорошо, новую запись не оформляем.
note-visit-kept = Хорошо, ничего не меняем: ваша запись остаётся как была.
note-phone-saved = Номер телефона сохранили.
note-name-saved = Имя сохранили.

## Запись

no-services = Сейчас нет { -service(case: "pl-gen") } для онлайн-записи.
choose-category = Выберите раздел:
choose-service = Выберите { -service(case: "acc") }:
choose-service-in = { $category }: выберите { -service(case: "acc") }
price-from = от { $price }
hours = { $count ->
    [one] { $count } час
    [few] { $count } часа
   *[many] { $count } часов
}
minutes = { $count ->
    [one] { $count } минута
    [few] { $count } минуты
   *[many] { $count } минут
}

choose-master = { $service }: выберите { -master(case: "acc") }
no-masters = { $service }: сейчас нет { -master(case: "pl-gen") } для онлайн-записи.
btn-any-master = Любой { -master }
btn-add-service = ➕ Добавить услугу
choose-more-service = Что добавить к «{ $service }»?
any-master = любой { -master }

choose-day = Выберите день ({ $range }):
no-days = На неделе { $range } свободных дней нет. Посмотрите следующую неделю.
btn-prev-week = ← Пред. неделя
btn-next-week = След. неделя →

choose-time = Свободное время, { $day }:
no-times = На { $day } свободного времени уже нет. Выберите другой день.

# The button's own label, so the prompt names the button the client actually sees.
-share-phone = Отправить мой номер
ask-phone =
    Оставьте номер телефона для связи: нажмите «{ -share-phone }» или напишите его,
    например: +7 912 345-67-89
ask-name = Как к вам обращаться? Напишите имя.

confirm-booking =
    Проверьте запись:

    { -service(case: "label") }: { $service }
    { -master(case: "label") }: { $master }
    Когда: { $when }
    Длительность: { $duration }
    Стоимость: { $price }
    Адрес: { $address }

    Имя: { $name }
    Телефон: { $phone }
btn-confirm = ✅ Подтвердить
btn-change-time = 🕒 Изменить время
btn-comment = 💬 Добавить комментарий
btn-comment-edit = 💬 Изменить комментарий
btn-comment-drop = Без комментария
btn-guest = 👥 Записать другого человека
btn-guest-self = Записать себя
btn-guest-no-phone = Без телефона
ask-guest-name = Как зовут того, кто придёт?
ask-guest-phone = Телефон того, кто придёт. Если его нет, нажмите «Без телефона» — свяжемся с вами.
confirm-booker = Записывает: { $name }, { $phone }
confirm-comment = Комментарий: { $comment }
ask-comment = Напишите комментарий к { -visit(case: "dat") }: пожелания { -master(case: "dat") }, что важно знать заранее. Не больше { $max } символов.
note-comment-long = Слишком длинный комментарий. Пожалуйста, сократите его.
btn-cancel = ✖ Отмена

booking = Записываем…
booked =
    Готово, вы записаны!

    { $service }, { -master } { $master }
    { $when }
    Стоимость: { $price }
    Адрес: { $address }

    Отменить или перенести запись можно в разделе «Мои записи».
booking-pending =
    Расписание { -place(case: "gen") } сейчас не отвечает. Мы сохранили вашу заявку и подтвердим её в ближайшее время.

    { $service }, { -master } { $master }
    { $when }
    Адрес: { $address }

wait = Секунду, выполняем предыдущее действие…
failed = Извините, что-то пошло не так. Попробуйте ещё раз или вернитесь в меню.
failed-call = Можно также позвонить: { $phone }
booking-closed = Онлайн-запись сейчас недоступна. Пожалуйста, позвоните в { -place(case: "acc") }, мы запишем вас по телефону.
booking-closed-call = Онлайн-запись сейчас недоступна. Пожалуйста, позвоните нам: { $phone } — запишем вас по телефону.

## Мои записи

my-none = У вас нет предстоящих записей.
my-count = { $count ->
    [one] У вас { $count } запись:
    [few] У вас { $count } записи:
   *[many] У вас { $count } записей:
}
my-item =
    { $n }. { $service }, { -master } { $master }
    { $when }
btn-cancel-n = ✖ Отменить { $n }
btn-reschedule-n = 🕒 Перенести { $n }
my-item-call = Отменить или перенести эту запись онлайн уже нельзя, до { -visit(case: "gen") } мало времени. Позвоните нам: { $phone }
my-item-call-nophone = Отменить или перенести эту запись онлайн уже нельзя, до { -visit(case: "gen") } мало времени. Пожалуйста, позвоните в { -place(case: "acc") }.
change-too-late = Запись «{ $service }», { $when }, уже скоро: отменить или перенести её онлайн нельзя.
change-call = Пожалуйста, позвоните нам: { $phone } — поможем.
change-call-nophone = Пожалуйста, позвоните в { -place(case: "acc") } — поможем.

cancel-ask =
    Отменить запись?

    { $service }, { -master } { $master }
    { $when }
btn-yes-cancel = Да, отменить
btn-no = Нет
cancelling = Отменяем…
cancelled =
    Запись отменена: { $service }, { $when }.
    Будем рады видеть вас в другой раз!

confirm-reschedule =
    Перенести запись?

    { $service }, { -master } { $master }
    Было: { $old }
    Станет: { $new }
    Адрес: { $address }
rescheduling = Переносим…
rescheduled =
    Запись перенесена.

    { $service }, { -master } { $master }
    { $when }
    Адрес: { $address }

## Календарь

day-today = Сегодня
day-tomorrow = Завтра
weekday-1 = Пн
weekday-2 = Вт
weekday-3 = Ср
weekday-4 = Чт
weekday-5 = Пт
weekday-6 = Сб
weekday-7 = Вс
month-1 = янв
month-2 = фев
month-3 = мар
month-4 = апр
month-5 = мая
month-6 = июн
month-7 = июл
month-8 = авг
month-9 = сен
month-10 = окт
month-11 = ноя
month-12 = дек

## Telegram adapter

tg-apology = Извините, что-то пошло не так. Попробуйте ещё раз чуть позже.
tg-share-phone = 📱 { -share-phone }
tg-or-choose = Или выберите:

## CRM: what managers read in the card

crm-author-client = Клиент
crm-author-bot = Бот
crm-author-comment = Комментарий клиента к { -visit(case: "dat") }
crm-by-client = клиентом в чате
crm-by-business = { -place(case: "ins") } в расписании
crm-by-crm = менеджером в CRM
crm-task-confirm = Подтвердить { -visit(case: "acc") }: { $service }, { $when }. Клиент: { $name }, { $phone }
crm-note-cancelled = Запись на { $when } отменена { $by }.
crm-note-rescheduled = Запись перенесена { $by }: теперь { $when }, { -master } { $master }.

## MAX adapter

max-apology = Извините, что-то пошло не так. Попробуйте ещё раз чуть позже.
max-callback-ack = Готово
max-share-phone = 📱 { -share-phone }

## Notices sent outside a conversation turn

notify-booked =
    Расписание подтвердило вашу запись!

    { $service }, { -master } { $master }
    { $when }
    Адрес: { $address }
notify-slot-gone =
    К сожалению, время { $when } ({ $service }) уже занято, и записать вас не получилось.
    Выберите, пожалуйста, другое время.
notify-cancelled-by-business =
    { -place(case: "label") } { -place.gender ->
        [feminine] отменила
       *[masculine] отменил
    } вашу запись: { $service }, { $when }.
    Приносим извинения! Вы можете выбрать другое время.
notify-booked-by-business =
    Вы записаны: { $service }, { $when }, { -master } { $master }.
    Если время не подходит, перенесите или отмените запись здесь.
notify-moved-by-business =
    { -place(case: "label") } { -place.gender ->
        [feminine] перенесла
       *[masculine] перенёс
    } вашу запись: { $service }.
    Было: { $old }
    Стало: { $new }
    Если новое время не подходит, выберите другое или отмените запись.
my-past = Записаться снова к тому же { -master(case: "dat") }:
btn-again = 🔁 { $service }, { $master }

## Reminders and two-way sync

reminder =
    Напоминаем о записи: { $service }, { -master } { $master }
    { $when }
    { $address }
btn-remind-come = ✅ Приду
btn-remind-cancel = ✖ Отменить
btn-remind-move = 🕒 Перенести
visit-confirmed =
    Спасибо, ждём вас!

    { $service }, { -master } { $master }
    { $when }
    { $address }
crm-note-confirmed = Клиент подтвердил { -visit(case: "acc") } { $when } (ответ на напоминание в чате).
crm-note-visited = Клиент пришёл на { -visit(case: "acc") } { $when } ({ $by }).
crm-note-no-show = Клиент не пришёл на { -visit(case: "acc") } { $when } ({ $by }).
crm-author-unfinished = Незавершённая запись
crm-lead-unfinished = Незавершённая запись — { $service }
crm-lead-question = Вопрос из чата — { $name }
crm-lead-question-service = Вопрос из чата
crm-note-support-question = Вопрос клиента
crm-note-support-called = Клиент позвал администратора
crm-note-support-answer = Ответ администратора
crm-note-unfinished = Клиент дошёл до контактов и не подтвердил запись: { $service }, { -master } { $master }, { $when }. Телефон: { $phone }. Имя: { $name }. Чат: { $chat }.
## School: notes and tasks in AlfaCRM
school-note-application = Заявка ({ $channel }, форма { $form }). Курс: { $course }. Комментарий: { $comment }. UTM: { $utm }. Страница: { $referrer }. Ссылка: { $link }
school-note-payment = Оплата в GetCourse, заказ { $deal }: { $course }
school-task-title = Новая заявка: { $course }
school-task-title-trial = Пробное занятие: { $course }
school-task-text = Связаться с { $name }, { $phone }. Курс: { $course }, старт: { $start }.
school-unnamed = Без имени

## School mode of the bot
school-choose-group = { $course }: выберите группу
school-no-groups = { $course }: набор в группы сейчас закрыт. Оставьте заявку позже или позвоните нам.
school-btn-trial = 🎓 Пробное занятие
school-trial = пробное занятие
school-group-start = старт { $date }
school-confirm = Проверьте заявку:
    Курс: { $course }
    Группа: { $group }
    Имя: { $name }
    Телефон: { $phone }
school-btn-send = ✅ Отправить заявку
school-sending = Отправляем заявку…
school-enrolled = Заявка принята: { $course }, { $group }. Куратор свяжется с вами.
school-enrolled-trial = Заявка на пробное занятие принята: { $course }. Куратор свяжется с вами, чтобы договориться о времени.

## Код подтверждения из СМС (салон подтверждает онлайн-записи по СМС)

ask-code = { -place(case: "label") } подтверждает онлайн-записи по СМС: на номер { $phone } пришёл код. Напишите его сюда, чтобы завершить запись.
code-tries-left = { $count ->
    [one] Осталась { $count } попытка.
    [few] Осталось { $count } попытки.
   *[many] Осталось { $count } попыток.
}
note-bad-code = Напишите код цифрами, как в СМС.
note-code-wrong = Код не подошёл.
note-code-resent = Отправили код ещё раз.
note-consent-first = Номер не сохранён: без вашего согласия на обработку персональных данных мы его не храним.
consent =
    Для записи { $business } попросит ваш номер телефона и то, как вас зовут. Они нужны только для записи: подтвердить { -visit(case: "acc") }, напомнить о нём и связаться, если что-то изменится.
    Нажимая «Согласен», вы даёте согласие на обработку этих персональных данных (152-ФЗ). Отозвать согласие можно в любой момент, написав нам.
consent-policy = Политика обработки персональных данных: { $url }
btn-consent = ✅ Согласен
btn-resend-code = Прислать код ещё раз
code-checking = Проверяем код…
code-resending = Просим прислать код ещё раз…
code-failed = Код не подошёл, запись не завершена. Пожалуйста, позвоните в { -place(case: "acc") } — запишем вас по телефону.
code-failed-call = Код не подошёл, запись не завершена. Пожалуйста, позвоните нам: { $phone } — запишем вас по телефону.

## Мои данные

data =
    Ваши данные для записи:

    Имя: { $name }
    Телефон: { $phone }
data-unset = пока не указано
btn-data-name = ✏️ Изменить имя
btn-data-phone = 📱 Изменить телефон
data-ask-name = Напишите новое имя.
data-ask-phone = Напишите новый номер телефона или нажмите «{ -share-phone }».

## Позвать администратора ([support])

btn-call-admin = 🙋 Позвать администратора
support-called = Позвали администратора — он ответит здесь, в этом чате. Можете сразу написать свой вопрос.
support-sent = Передали ваш вопрос администратору — ответ придёт сюда, в этот чат.
support-closed = Сейчас администраторы не на связи: ответим { $day } с { $time }.
support-day-today = сегодня
support-day-tomorrow = завтра
support-answer = Администратор: { $text }
support-relay =
    🙋 Вопрос клиента { $marker }
    Имя: { $name }
    Телефон: { $phone }
    Канал: { $channel }
    Источник: { $source }
support-relay-question = Вопрос: { $question }
support-relay-called = Клиент нажал «Позвать администратора».
support-relay-lines = Последние сообщения:
support-relay-client = клиент
support-relay-bot = бот
support-relay-reply = Ответьте на это сообщение — ответ уйдёт клиенту.
