# A clinic (business.kind = "clinic"): terms over the built-in salon texts.
# Cases as in ../main.ftl.

-master = { $case ->
   *[nom] doctor
    [pl] doctors
    [label] Doctor
}
-service = { $case ->
   *[nom] service
    [pl] services
    [label] Service
}
-reservation = { $case ->
   *[nom] appointment
    [pl] appointments
    [label] Appointment
}
-visit = appointment
-place = clinic
