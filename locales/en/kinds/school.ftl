# A school (business.kind = "school"): terms over the built-in salon texts.
# Cases as in ../main.ftl.

-master = { $case ->
   *[nom] teacher
    [pl] teachers
    [label] Teacher
}
-service = { $case ->
   *[nom] course
    [pl] courses
    [label] Course
}
-reservation = { $case ->
   *[nom] booking
    [pl] bookings
    [label] Booking
}
-visit = lesson
-place = school
