//! The dialog's commands carried out: the schedule asked, bookings made, cancelled, moved
//! and confirmed, each state change written with the jobs it causes in one transaction.

use super::*;
use crate::domain::{BookingId, RecordId};

impl Conversations {
    /// Writes a booking's state change and the jobs it causes in one transaction.
    async fn commit_change(
        &self,
        booking_id: &BookingId,
        change: Change<'_>,
        jobs: &[NewJob],
    ) -> Result<(), ConversationError> {
        let now = self.clock.now();
        let mut tx = self.store.begin().await.map_err(StoreError::from)?;
        match change {
            Change::Confirmed { external_id } => {
                confirm_booking_in(&mut tx, booking_id, external_id, now).await?;
            }
            Change::Status(status) => {
                set_booking_status_in(&mut tx, booking_id, status, now).await?;
            }
            Change::None => {}
        }
        for job in jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Reports from the schedule about this booking wait while we write its change there
    /// ourselves, so the salon is not credited with the client's own move or cancel.
    async fn hold_change(&self, booking_id: &BookingId) -> Result<(), ConversationError> {
        let until = self.clock.now() + crate::lifecycle::changes::CHANGE_IN_FLIGHT;
        self.store.hold_change(booking_id, until).await?;
        Ok(())
    }

    fn crm_job(
        &self,
        operation: Operation,
        booking_id: &BookingId,
        by: Option<&str>,
    ) -> Option<NewJob> {
        self.crm_system.map(|system| {
            booking_job(
                &self.business.id,
                system,
                operation,
                booking_id,
                by,
                self.clock.now(),
            )
        })
    }

    pub(super) async fn input_for(
        &self,
        chat: &ChatRef,
        event: ChatEvent,
    ) -> Result<Input, ConversationError> {
        Ok(match event {
            ChatEvent::Start { payload } => {
                let source = self.resolve_source(chat, payload).await?;
                crate::metrics::dialog_started(&source);
                Input::Start { source }
            }
            ChatEvent::Text(text) => Input::Text(text),
            ChatEvent::Button { data, .. } => Input::Button(data),
            ChatEvent::Contact { phone } => Input::Contact { phone },
        })
    }

    /// A deep-link payload is kept verbatim; when it is one of our tracked-link tokens, the full
    /// UTM set stored under it comes along.
    async fn resolve_source(
        &self,
        chat: &ChatRef,
        payload: Option<String>,
    ) -> Result<Source, ConversationError> {
        let mut source = Source::direct(chat.channel);
        let Some(payload) = payload.filter(|p| !p.trim().is_empty()) else {
            return Ok(source);
        };
        if let Some(link) = self.store.tracked_link(&self.business.id, &payload).await? {
            source.link_name = Some(link.name);
            source.utm = link.utm;
        }
        source.payload = Some(payload);
        Ok(source)
    }

    pub(super) async fn execute(
        &self,
        chat: &ChatRef,
        command: Command,
    ) -> Result<Loaded, ConversationError> {
        if let Some(school) = &self.school {
            match command {
                Command::LoadServices => return Ok(school_courses(&school.config)),
                Command::LoadMasters { service_id } => {
                    return Ok(self.school_groups(school, &service_id).await);
                }
                Command::Enrol(draft) => return self.enrol(school, draft).await,
                _ => {}
            }
        }
        let b = &self.booking;
        let loaded = match command {
            Command::LoadServices => b.services().await.map(Loaded::Services),
            Command::LoadMasters { service_id } => {
                b.masters(&service_id).await.map(Loaded::Masters)
            }
            Command::LoadDays {
                service_id,
                master_id,
                from,
                to,
            } => b
                .free_days(&service_id, master_id.as_deref(), from, to)
                .await
                .map(Loaded::Days),
            Command::LoadSlots {
                service_id,
                master_id,
                day,
            } => b
                .free_slots(&service_id, master_id.as_deref(), day)
                .await
                .map(Loaded::Slots),
            Command::Book(draft) => return self.book(chat, draft).await,
            Command::Enrol(_) => Err(BookingError::rejected(
                "applications are taken in school mode only",
            )),
            Command::LoadMyBookings { phone } => {
                let now = self.clock.now();
                let business = &self.business.id;
                let mut list = self
                    .store
                    .upcoming_bookings(business, chat, phone.as_ref(), now)
                    .await?;
                // The engine tells upcoming from past by time; past visits offer "book again".
                list.extend(
                    self.store
                        .past_visits(business, chat, phone.as_ref(), now, 5)
                        .await?,
                );
                Ok(Loaded::MyBookings(list))
            }
            Command::Cancel { booking_id } => return self.cancel(chat, &booking_id).await,
            Command::Reschedule { booking_id, slot } => {
                return self.reschedule(chat, &booking_id, slot).await;
            }
            Command::ConfirmVisit { booking_id } => {
                return self.confirm_visit(chat, &booking_id).await;
            }
            Command::SubmitCode { booking_id, code } => {
                return self.submit_code(chat, &booking_id, Some(&code)).await;
            }
            Command::ResendCode { booking_id } => {
                return self.submit_code(chat, &booking_id, None).await;
            }
            Command::CallAdmin { question } => {
                let now = self.clock.now();
                // The card in the CRM gets the question too, with the lead it needs.
                let note = self.crm_system.map(|system| {
                    let kind = if question.is_some() {
                        crate::support::NoteKind::Question
                    } else {
                        crate::support::NoteKind::Called
                    };
                    crate::support::note_job(
                        &self.business.id,
                        system,
                        chat,
                        kind,
                        question.clone(),
                        now,
                    )
                });
                let job = crate::support::question_job(&self.business.id, chat, question, now);
                let mut tx = self.store.begin().await.map_err(StoreError::from)?;
                enqueue_in(&mut tx, &job, now).await?;
                if let Some(note) = &note {
                    enqueue_in(&mut tx, note, now).await?;
                }
                tx.commit().await.map_err(StoreError::from)?;
                Ok(Loaded::AdminCalled)
            }
            Command::AbandonCode { booking_id } => {
                if let Some(booking) = self.owned_booking(chat, &booking_id).await?
                    && booking.status == BookingStatus::Requested
                {
                    self.booking.abandon_code(&booking.id).await;
                    self.store
                        .set_booking_status(&booking.id, BookingStatus::Failed, self.clock.now())
                        .await?;
                }
                Ok(Loaded::CodeAbandoned)
            }
        };
        Ok(loaded.unwrap_or_else(|e| failed(&e)))
    }

    /// A course's groups as AlfaCRM has them now, with their start dates; the trial lesson
    /// last when the course offers one.
    async fn school_groups(&self, school: &SchoolMode, course_key: &str) -> Loaded {
        let Some(course) = school.config.course(course_key) else {
            return Loaded::Failed {
                reason: format!("unknown course {course_key}"),
            };
        };
        let groups = match school.crm.groups().await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read groups from the school CRM");
                return Loaded::Failed {
                    reason: e.to_string(),
                };
            }
        };
        let today = self
            .clock
            .now()
            .with_timezone(&self.business.timezone)
            .date_naive();
        let lang = self.business.locale;
        let mut list: Vec<crate::domain::Master> = course
            .alfacrm_group_ids
            .iter()
            .filter_map(|id| groups.iter().find(|g| g.id == *id))
            // A group that has ended takes no one.
            .filter(|g| g.e_date.is_none_or(|end| end >= today))
            .map(|g| crate::domain::Master {
                id: g.id.to_string(),
                name: g.name.clone(),
                specialization: g
                    .b_date
                    .filter(|d| *d > today)
                    .map(|d| {
                        self.business.texts.t_args(
                            lang,
                            "school-group-start",
                            &[(
                                "date",
                                crate::i18n::FluentValue::from(d.format("%d.%m.%Y").to_string()),
                            )],
                        )
                    })
                    .unwrap_or_default(),
            })
            .collect();
        if course.trial {
            list.push(crate::domain::Master {
                id: crate::dialog::TRIAL.into(),
                name: String::new(),
                specialization: String::new(),
            });
        }
        Loaded::Masters(list)
    }

    async fn enrol(
        &self,
        school: &SchoolMode,
        draft: crate::dialog::EnrolDraft,
    ) -> Result<Loaded, ConversationError> {
        let group_id = draft.group.as_ref().and_then(|g| g.id.parse::<i64>().ok());
        if let Some(consent) = &draft.consent {
            self.store
                .record_consent(
                    &self.business.id,
                    &draft.phone,
                    &draft.name,
                    consent,
                    self.clock.now(),
                )
                .await?;
        }
        let new = crate::school::applications::NewApplication {
            form: "bot".into(),
            name: draft.name,
            phone: draft.phone,
            email: None,
            course: Some(draft.course.id.clone()),
            group_id,
            trial: draft.trial,
            comment: None,
            source: draft.source,
            referrer: None,
        };
        let app = crate::school::applications::submit(
            &self.store,
            &self.business.id,
            new,
            school.config.alfacrm.is_some(),
            self.clock.now(),
        )
        .await?;
        tracing::info!(application = %app.id, phone = %app.details.phone.masked(), "application from the bot");
        Ok(Loaded::Enrolled {
            course: draft.course.name,
            group: draft.group.map(|g| g.name),
        })
    }

    async fn book(&self, chat: &ChatRef, draft: BookingDraft) -> Result<Loaded, ConversationError> {
        let now = self.clock.now();
        let master_name = match &draft.master {
            Some(m) if m.id == draft.slot.master_id => m.name.clone(),
            _ => {
                self.master_name(&draft.service.id, &draft.slot.master_id)
                    .await
            }
        };
        let booking = Booking {
            id: BookingId::generate(),
            business_id: self.business.id.clone(),
            client_phone: draft.phone.clone(),
            client_name: draft.name.clone(),
            client_email: None,
            service_id: draft.service.id.clone(),
            service_name: draft.service.name.clone(),
            master_id: draft.slot.master_id.clone(),
            master_name,
            start: draft.slot.start,
            duration_min: draft.service.duration_min,
            price: draft.service.price_min,
            status: BookingStatus::Requested,
            source: draft.source.clone(),
            chat: Some(chat.clone()),
            external_id: None,
            created_at: now,
        };
        // The request is on record before the schedule is asked, so nothing is lost if the
        // process dies in between.
        self.store
            .insert_booking_with_comment(&booking, draft.comment.as_deref(), draft.consent.as_ref())
            .await?;
        let request = BookRequest {
            booking_id: booking.id.clone(),
            service_id: booking.service_id.clone(),
            master_id: booking.master_id.clone(),
            start: booking.start,
            duration_min: booking.duration_min,
            client_phone: booking.client_phone.clone(),
            client_name: booking.client_name.clone(),
            client_email: None,
            comment: crate::booking::record_comment(draft.comment.as_deref(), &booking.source),
        };
        match self.booking.book(&request).await {
            Ok(record) => self.confirmed(booking, record).await,
            Err(BookingError::CodeRequired) => {
                // The schedule holds the booking until the client types the code it sent.
                tracing::info!(booking = %booking.id, "the schedule asks the client for a code");
                Ok(Loaded::CodeRequired {
                    booking_id: booking.id,
                })
            }
            Err(BookingError::SlotTaken) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, now)
                    .await?;
                Ok(Loaded::SlotTaken)
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(booking = %booking.id, error = %e, "schedule unreachable; booking queued");
                let job = booking_job(
                    &self.business.id,
                    self.booking.system(),
                    Operation::CompleteBooking,
                    &booking.id,
                    Some("client"),
                    now,
                );
                self.commit_change(&booking.id, Change::None, &[job])
                    .await?;
                Ok(Loaded::BookingPending(booking))
            }
            Err(e) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, now)
                    .await?;
                Ok(failed(&e))
            }
        }
    }

    /// Completes (`code`) or asks again for the code of (`None`) a booking the schedule holds.
    async fn submit_code(
        &self,
        chat: &ChatRef,
        id: &BookingId,
        code: Option<&str>,
    ) -> Result<Loaded, ConversationError> {
        let booking = match self.owned_booking(chat, id).await? {
            Some(b) if b.status == BookingStatus::Requested => b,
            _ => {
                return Ok(Loaded::Failed {
                    reason: format!("booking {id} does not wait for a code"),
                });
            }
        };
        let answer = match code {
            Some(code) => self.booking.confirm_code(&booking.id, code).await.map(Some),
            None => self.booking.resend_code(&booking.id).await,
        };
        match answer {
            Ok(Some(record)) => self.confirmed(booking, record).await,
            Ok(None) => Ok(Loaded::CodeResent),
            Err(BookingError::CodeWrong) => Ok(Loaded::CodeWrong),
            Err(e) if e.is_transient() => Ok(failed(&e)),
            Err(e) => {
                self.store
                    .set_booking_status(&booking.id, BookingStatus::Failed, self.clock.now())
                    .await?;
                Ok(match e {
                    BookingError::SlotTaken => Loaded::SlotTaken,
                    // The held booking cannot be completed online any more (it expired, or the
                    // schedule wants what a bot cannot give): the phone is the way left.
                    e => {
                        tracing::warn!(booking = %booking.id, error = %e, "code booking given up");
                        Loaded::BookingClosed
                    }
                })
            }
        }
    }

    /// The schedule confirmed the booking: its link, the CRM and accounting jobs, the client.
    async fn confirmed(
        &self,
        mut booking: Booking,
        record: crate::booking::Record,
    ) -> Result<Loaded, ConversationError> {
        let now = self.clock.now();
        let mut jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingCreated, &booking.id, Some("client"))
            .into_iter()
            .collect();
        if self.accounting {
            jobs.push(crate::lifecycle::effects::invoice_job(
                &self.business.id,
                &booking.id,
                now,
            ));
        }
        self.commit_change(
            &booking.id,
            Change::Confirmed {
                external_id: &record.external_id,
            },
            &jobs,
        )
        .await?;
        self.store
            .put_link(
                &self.business.id,
                "booking",
                &booking.id,
                self.booking.system(),
                &record.external_id,
                now,
            )
            .await?;
        booking.status = BookingStatus::Booked;
        booking.external_id = Some(record.external_id);
        crate::booking::log_booked(&booking);
        Ok(Loaded::Booked(booking))
    }

    /// Only a booking made from this chat, or one under a phone this chat booked with, may be
    /// changed from it.
    async fn owned_booking(
        &self,
        chat: &ChatRef,
        id: &BookingId,
    ) -> Result<Option<Booking>, ConversationError> {
        let Some(booking) = self.store.booking(&self.business.id, id).await? else {
            return Ok(None);
        };
        if booking.business_id != self.business.id {
            return Ok(None);
        }
        if booking.chat.as_ref() == Some(chat) {
            return Ok(Some(booking));
        }
        let mine = self
            .store
            .upcoming_bookings(&self.business.id, chat, None, self.clock.now())
            .await?;
        Ok(mine
            .iter()
            .any(|b| b.client_phone == booking.client_phone)
            .then_some(booking))
    }

    async fn cancel(&self, chat: &ChatRef, id: &BookingId) -> Result<Loaded, ConversationError> {
        let Some(mut booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        if let Some(external) = &booking.external_id {
            self.hold_change(&booking.id).await?;
            match self.booking.cancel(external).await {
                Ok(()) | Err(BookingError::NotFound(_)) => {}
                Err(e) => {
                    self.store.release_change(&booking.id).await?;
                    return Ok(failed(&e));
                }
            }
        }
        booking.status = BookingStatus::CancelledByClient;
        let jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingCancelled, &booking.id, Some("client"))
            .into_iter()
            .collect();
        self.commit_change(&booking.id, Change::Status(booking.status), &jobs)
            .await?;
        self.store.release_change(&booking.id).await?;
        tracing::info!(booking = %booking.id, "cancelled by client");
        Ok(Loaded::Cancelled(booking))
    }

    async fn reschedule(
        &self,
        chat: &ChatRef,
        id: &BookingId,
        slot: crate::domain::Slot,
    ) -> Result<Loaded, ConversationError> {
        let Some(mut booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        let Some(external) = booking.external_id.clone() else {
            return Ok(Loaded::Failed {
                reason: "booking is not confirmed yet".into(),
            });
        };
        self.hold_change(&booking.id).await?;
        let moved = self.booking.reschedule(&external, &slot).await;
        if moved.is_err() {
            self.store.release_change(&booking.id).await?;
        }
        match moved {
            Ok(record) => {
                let master_name = if record.master_id == booking.master_id {
                    booking.master_name.clone()
                } else {
                    self.master_name(&booking.service_id, &record.master_id)
                        .await
                };
                self.store
                    .move_booking(
                        &booking.id,
                        &record.master_id,
                        &master_name,
                        record.start,
                        self.clock.now(),
                    )
                    .await?;
                booking.master_id = record.master_id;
                booking.master_name = master_name;
                booking.start = record.start;
                if let Some(job) =
                    self.crm_job(Operation::BookingRescheduled, &booking.id, Some("client"))
                {
                    self.commit_change(&booking.id, Change::None, &[job])
                        .await?;
                }
                self.store.release_change(&booking.id).await?;
                Ok(Loaded::Rescheduled(booking))
            }
            Err(BookingError::SlotTaken) => Ok(Loaded::SlotTaken),
            Err(e) => Ok(failed(&e)),
        }
    }

    /// "I'll come": the schedule's confirmation status where it has one, our store, and a note
    /// for the CRM. A second press changes nothing more.
    async fn confirm_visit(
        &self,
        chat: &ChatRef,
        id: &BookingId,
    ) -> Result<Loaded, ConversationError> {
        let Some(booking) = self.owned_booking(chat, id).await? else {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} not found"),
            });
        };
        if !booking.status.is_active() || booking.start <= self.clock.now() {
            return Ok(Loaded::Failed {
                reason: format!("booking {id} is no longer upcoming"),
            });
        }
        if self.store.visit_confirmed_at(&booking.id).await?.is_some() {
            return Ok(Loaded::VisitConfirmed(booking));
        }
        let now = self.clock.now();
        let mut jobs: Vec<NewJob> = self
            .crm_job(Operation::BookingConfirmed, &booking.id, Some("client"))
            .into_iter()
            .collect();
        // The schedule's confirmation status goes through the queue, so a schedule that is down
        // gets it when it is back.
        if booking.external_id.is_some() {
            jobs.push(booking_job(
                &self.business.id,
                self.booking.system(),
                Operation::BookingConfirmed,
                &booking.id,
                Some("client"),
                now,
            ));
        }
        let mut tx = self.store.begin().await.map_err(StoreError::from)?;
        crate::store::confirm_visit_in(&mut tx, &booking.id, now).await?;
        crate::store::record_event_in(
            &mut tx,
            &booking.business_id,
            &booking.id,
            "client",
            "confirmed",
            "I'll come (reminder)",
            now,
        )
        .await?;
        for job in &jobs {
            enqueue_in(&mut tx, job, now).await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(booking = %booking.id, "visit confirmed by client");
        Ok(Loaded::VisitConfirmed(booking))
    }

    async fn master_name(&self, service_id: &str, master_id: &str) -> String {
        match self.booking.masters(service_id).await {
            Ok(masters) => masters
                .into_iter()
                .find(|m| m.id == master_id)
                .map(|m| m.name)
                .unwrap_or_else(|| master_id.to_string()),
            Err(_) => master_id.to_string(),
        }
    }
}

enum Change<'a> {
    Confirmed { external_id: &'a RecordId },
    Status(BookingStatus),
    None,
}

fn failed(e: &BookingError) -> Loaded {
    if let BookingError::Closed(reason) = e {
        tracing::warn!(%reason, "online booking is closed; the client is told to call");
        return Loaded::BookingClosed;
    }
    tracing::warn!(error = %e, "booking system call failed");
    Loaded::Failed {
        reason: e.to_string(),
    }
}

/// The configured courses as the dialog's "services".
fn school_courses(config: &crate::school::config::SchoolConfig) -> Loaded {
    Loaded::Services(
        config
            .courses
            .iter()
            .map(|c| crate::domain::Service {
                id: c.key.clone(),
                name: c.title.clone(),
                category: String::new(),
                duration_min: 0,
                price_min: crate::domain::Money::default(),
                price_max: crate::domain::Money::default(),
                description: None,
            })
            .collect(),
    )
}
