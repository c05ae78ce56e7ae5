# Bot texts. Keys must match locales/ru/main.ftl (a test checks it).

## Words that depend on the kind of business (business.kind). These are a salon's; a clinic
## and a school override the terms in kinds/clinic.ftl and kinds/school.ftl.
## Cases: nom — the plain word, pl — plural, label — capitalised, for a line in a booking card.

-master = { $case ->
   *[nom] master
    [pl] masters
    [label] Master
}
-service = { $case ->
   *[nom] service
    [pl] services
    [label] Service
}
-reservation = { $case ->
   *[nom] booking
    [pl] bookings
    [label] Booking
}
-visit = visit
-place = salon

## Menu and help

greeting =
    Hello! This is the booking bot of { $business }.
    Here you can book a { -service }, see your { -reservation(case: "pl") }, cancel or reschedule them.
menu = Main menu. How can I help?
help =
    { $business }: online booking.

    "Book" — choose a { -service }, a { -master }, a day and a time.
    "My { -reservation(case: "pl") }" — see, cancel or reschedule them.

    Commands: /book — book, /my — my { -reservation(case: "pl") }, /menu — menu, /cancel — stop the current step.

    Address: { $address }{ $phone }
help-phone = {"\u000A"}Phone: { $phone }

btn-book = 📅 Book
btn-my = 🗂 My { -reservation(case: "pl") }
btn-data = 👤 My details
btn-help = ❓ Help
btn-menu = 🏠 Menu
btn-back = ← Back
btn-retry = 🔄 Retry
btn-prev = ← Previous
btn-next = More →

## Notes above a screen

note-hint = Please choose an option with the buttons below.
note-unknown-command = There is no such command. Commands: /book, /my, /menu, /help, /cancel.
note-stale = This button is from an older message. Here is the current step:
note-slot-taken = Sorry, that time has just been taken. Please pick another:
note-bad-phone = That does not look like a phone number. Please type it like this: +7 912 345-67-89
note-name-empty = The name cannot be empty.
note-name-long = That name is too long: 100 characters at most.
note-name-not-a-name = That does not look like a name. Please write your name in letters, for example: Anna.
note-not-found = That is no longer in the list; here is the current one.
note-flow-cancelled = OK, cancelled.
note-booking-dropped = OK, no new { -reservation } is made.
note-visit-kept = OK, nothing is changed: your { -reservation } stays as it was.
note-phone-saved = Your phone number is saved.
note-name-saved = Your name is saved.

## Booking

no-services = There are no { -service(case: "pl") } available for online booking right now.
choose-category = Choose a section:
choose-service = Choose a { -service }:
choose-service-in = { $category }: choose a { -service }
price-from = from { $price }
hours = { $count ->
    [one] { $count } hour
   *[other] { $count } hours
}
minutes = { $count ->
    [one] { $count } minute
   *[other] { $count } minutes
}

choose-master = { $service }: choose a { -master }
no-masters = { $service }: no { -master(case: "pl") } are available for online booking right now.
btn-any-master = Any { -master }
btn-add-service = ➕ Add a service
choose-more-service = What to add to «{ $service }»?
any-master = any { -master }

choose-day = Choose a day ({ $range }):
no-days = No free days in the week { $range }. Have a look at the next week.
btn-prev-week = ← Previous week
btn-next-week = Next week →

choose-time = Free times, { $day }:
no-times = No free times are left on { $day }. Please choose another day.

# The button's own label, so the prompt names the button the client actually sees.
-share-phone = Share my phone number
ask-phone =
    Please leave a phone number: press "{ -share-phone }" or type it,
    for example: +7 912 345-67-89
ask-name = What is your name?

confirm-booking =
    Please check your { -reservation }:

    { -service(case: "label") }: { $service }
    { -master(case: "label") }: { $master }
    When: { $when }
    Duration: { $duration }
    Price: { $price }
    Address: { $address }

    Name: { $name }
    Phone: { $phone }
btn-confirm = ✅ Confirm
btn-change-time = 🕒 Change time
btn-comment = 💬 Add a comment
btn-comment-edit = 💬 Change the comment
btn-comment-drop = No comment
btn-guest = 👥 Book for someone else
btn-guest-self = Book for myself
btn-guest-no-phone = No phone
ask-guest-name = What is the name of the person who will come?
ask-guest-phone = The phone of the person who will come. If they have none, press «No phone» and we will contact you.
confirm-booker = Booked by: { $name }, { $phone }
confirm-comment = Comment: { $comment }
ask-comment = Please write a comment to your { -visit }: wishes for the { -master }, anything to know in advance. Up to { $max } characters.
note-comment-long = The comment is too long. Please shorten it.
btn-cancel = ✖ Cancel

booking = Booking…
booked =
    Done, you are booked!

    { $service }, { -master } { $master }
    { $when }
    Price: { $price }
    Address: { $address }

    You can cancel or reschedule it under "My { -reservation(case: "pl") }".
booking-pending =
    The schedule is not answering right now. We saved your request and will confirm it shortly.

    { $service }, { -master } { $master }
    { $when }
    Address: { $address }

wait = One moment, finishing the previous action…
failed = Sorry, something went wrong. Please try again or go back to the menu.
failed-call = You can also call us: { $phone }
booking-closed = Online booking is not available right now. Please call us and we will book you by phone.
booking-closed-call = Online booking is not available right now. Please call us at { $phone } and we will book you by phone.

## My bookings

my-none = You have no upcoming { -reservation(case: "pl") }.
my-count = { $count ->
    [one] You have { $count } { -reservation }:
   *[other] You have { $count } { -reservation(case: "pl") }:
}
my-item =
    { $n }. { $service }, { -master } { $master }
    { $when }
btn-cancel-n = ✖ Cancel { $n }
btn-reschedule-n = 🕒 Reschedule { $n }
my-item-call = This { -visit } is too close to cancel or reschedule online. Please call us: { $phone }
my-item-call-nophone = This { -visit } is too close to cancel or reschedule online. Please call the { -place }.
change-too-late = Your { -reservation } "{ $service }", { $when }, is too close to cancel or reschedule online.
change-call = Please call us: { $phone } — we will help.
change-call-nophone = Please call the { -place } — we will help.

cancel-ask =
    Cancel this { -reservation }?

    { $service }, { -master } { $master }
    { $when }
btn-yes-cancel = Yes, cancel
btn-no = No
cancelling = Cancelling…
cancelled =
    { -reservation(case: "label") } cancelled: { $service }, { $when }.
    We hope to see you another time!

confirm-reschedule =
    Reschedule this { -reservation }?

    { $service }, { -master } { $master }
    Was: { $old }
    Now: { $new }
    Address: { $address }
rescheduling = Rescheduling…
rescheduled =
    { -reservation(case: "label") } rescheduled.

    { $service }, { -master } { $master }
    { $when }
    Address: { $address }

## Calendar

day-today = Today
day-tomorrow = Tomorrow
weekday-1 = Mon
weekday-2 = Tue
weekday-3 = Wed
weekday-4 = Thu
weekday-5 = Fri
weekday-6 = Sat
weekday-7 = Sun
month-1 = Jan
month-2 = Feb
month-3 = Mar
month-4 = Apr
month-5 = May
month-6 = Jun
month-7 = Jul
month-8 = Aug
month-9 = Sep
month-10 = Oct
month-11 = Nov
month-12 = Dec

## Telegram adapter

tg-apology = Sorry, something went wrong. Please try again a little later.
tg-share-phone = 📱 { -share-phone }
tg-or-choose = Or choose:

## CRM: what managers read in the card

crm-author-client = Client
crm-author-bot = Bot
crm-author-comment = Client's comment to the { -visit }
crm-by-client = by the client in the chat
crm-by-business = by the business in the schedule
crm-by-crm = by a manager in the CRM
crm-task-confirm = Confirm the { -visit }: { $service }, { $when }. Client: { $name }, { $phone }
crm-note-cancelled = The { -visit } on { $when } was cancelled { $by }.
crm-note-rescheduled = The { -visit } was moved { $by }: now { $when }, { -master } { $master }.

## MAX adapter

max-apology = Sorry, something went wrong. Please try again a little later.
max-callback-ack = Done
max-share-phone = 📱 { -share-phone }

## Notices sent outside a conversation turn

notify-booked =
    The schedule confirmed your { -reservation }!

    { $service }, { -master } { $master }
    { $when }
    Address: { $address }
notify-slot-gone =
    Sorry, { $when } ({ $service }) is already taken and we could not book it.
    Please pick another time.
notify-cancelled-by-business =
    The { -place } cancelled your { -reservation }: { $service }, { $when }.
    We apologise! You can pick another time.
notify-booked-by-business =
    You are booked: { $service }, { $when }, with { $master }.
    If the time does not suit you, move or cancel the { -reservation } here.
notify-moved-by-business =
    The { -place } moved your { -reservation }: { $service }.
    Was: { $old }
    Now: { $new }
    If the new time does not suit you, pick another one or cancel.
my-past = Book again with the same { -master }:
btn-again = 🔁 { $service }, { $master }

## Reminders and two-way sync

reminder =
    A reminder of your { -reservation }: { $service }, { -master } { $master }
    { $when }
    { $address }
btn-remind-come = ✅ I'll come
btn-remind-cancel = ✖ Cancel
btn-remind-move = 🕒 Move
visit-confirmed =
    Thank you, see you soon!

    { $service }, { -master } { $master }
    { $when }
    { $address }
crm-note-confirmed = The client confirmed the { -visit } on { $when } (answer to the chat reminder).
crm-note-visited = The client came to the { -visit } on { $when } ({ $by }).
crm-note-no-show = The client did not come to the { -visit } on { $when } ({ $by }).
crm-author-unfinished = Unfinished booking
crm-lead-unfinished = Unfinished booking — { $service }
crm-lead-question = Question from the chat — { $name }
crm-lead-question-service = Question from the chat
crm-note-support-question = Client's question
crm-note-support-called = The client called an administrator
crm-note-support-answer = Administrator's answer
crm-note-unfinished = The client reached the contact step and did not confirm: { $service }, { -master } { $master }, { $when }. Phone: { $phone }. Name: { $name }. Chat: { $chat }.
## School: notes and tasks in AlfaCRM
school-note-application = Application ({ $channel }, form { $form }). Course: { $course }. Comment: { $comment }. UTM: { $utm }. Page: { $referrer }. Link: { $link }
school-note-payment = Paid in GetCourse, order { $deal }: { $course }
school-task-title = New application: { $course }
school-task-title-trial = Trial lesson: { $course }
school-task-text = Contact { $name }, { $phone }. Course: { $course }, start: { $start }.
school-unnamed = No name

## School mode of the bot
school-choose-group = { $course }: choose a group
school-no-groups = { $course }: no group is open for enrolment now. Apply later or call us.
school-btn-trial = 🎓 Trial lesson
school-trial = trial lesson
school-group-start = starts { $date }
school-confirm = Please check your application:
    Course: { $course }
    Group: { $group }
    Name: { $name }
    Phone: { $phone }
school-btn-send = ✅ Send the application
school-sending = Sending your application…
school-enrolled = Application received: { $course }, { $group }. The curator will contact you.
school-enrolled-trial = Trial lesson application received: { $course }. The curator will contact you to agree on a time.

## The SMS confirmation code (the salon confirms online bookings by SMS)

ask-code = The { -place } confirms online { -reservation(case: "pl") } by SMS: a code has been sent to { $phone }. Type it here to complete your { -reservation }.
code-tries-left = { $count ->
    [one] { $count } try left.
   *[other] { $count } tries left.
}
note-bad-code = Please type the code in digits, as in the SMS.
note-code-wrong = That code did not match.
note-code-resent = The code has been sent again.
note-consent-first = The number is not saved: we keep it only with your consent to the processing of personal data.
consent =
    To book you in, { $business } will ask for your phone number and your name. They are used for the { -reservation } only: to confirm the { -visit }, remind you of it and reach you if something changes.
    By pressing "I agree" you consent to the processing of this personal data (Federal Law 152-FZ). You can withdraw it at any time by writing to us.
consent-policy = Personal data policy: { $url }
btn-consent = ✅ I agree
btn-resend-code = Send the code again
code-checking = Checking the code…
code-resending = Asking for the code again…
code-failed = The code did not match, so the { -reservation } is not complete. Please call the { -place } and we will book you by phone.
code-failed-call = The code did not match, so the { -reservation } is not complete. Please call us: { $phone } and we will book you by phone.

## My details

data =
    Your details for booking:

    Name: { $name }
    Phone: { $phone }
data-unset = not given yet
btn-data-name = ✏️ Change name
btn-data-phone = 📱 Change phone
data-ask-name = Please write your new name.
data-ask-phone = Please type your new phone number or press "{ -share-phone }".

## Call an administrator ([support])

btn-call-admin = 🙋 Call an administrator
support-called = An administrator has been called and will answer here, in this chat. You can write your question right away.
support-sent = Your question has gone to an administrator; the answer will come here, in this chat.
support-closed = Our administrators are away now: we will answer { $day } from { $time }.
support-day-today = today
support-day-tomorrow = tomorrow
support-answer = Administrator: { $text }
support-relay =
    🙋 Client's question { $marker }
    Name: { $name }
    Phone: { $phone }
    Channel: { $channel }
    Source: { $source }
support-relay-question = Question: { $question }
support-relay-called = The client pressed "Call an administrator".
support-relay-lines = Last messages:
support-relay-client = client
support-relay-bot = bot
support-relay-reply = Reply to this message and the answer goes to the client.
