//! The checks a configuration passes before anything starts: each section's own, and those
//! across sections (a school needs AlfaCRM, CommerceML needs the HTTP server, …).

use super::*;

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let (deployment, business) = self.clone().into_parts();
        validate(&deployment, &business)
    }
}

/// One business's settings checked with the deployment that serves it (a CommerceML exchange
/// needs the deployment's HTTP server). The checks run in the order they always have: the
/// first problem found is the one reported.
pub(super) fn validate(
    deployment: &Deployment,
    settings: &BusinessSettings,
) -> Result<(), ConfigError> {
    settings
        .reminders
        .validate()
        .map_err(|message| ConfigError::Key {
            key: "reminders.offsets".into(),
            message,
        })?;
    if settings
        .booking
        .change_cutoff
        .is_some_and(|c| c > MAX_CHANGE_CUTOFF)
    {
        return Err(ConfigError::Key {
            key: "booking.change_cutoff".into(),
            message: "must be at most 7d".into(),
        });
    }
    if deployment.sync.reconcile_interval.is_zero() {
        return Err(ConfigError::Key {
            key: "sync.reconcile_interval".into(),
            message: "must be positive".into(),
        });
    }
    if let Some(onec) = &settings.onec {
        onec.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
        if onec.mode == crate::accounting::config::OnecMode::Commerceml && deployment.http.is_none()
        {
            return Err(ConfigError::Key {
                key: "http".into(),
                message:
                    "onec.mode = \"commerceml\" needs the [http] server: 1C calls /1c/exchange"
                        .into(),
            });
        }
    }
    if let Some(crm) = &settings.crm {
        crm.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
    }
    if let Some(school) = &settings.school {
        school.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
    }
    if settings.business.kind == BusinessKind::School
        && settings
            .school
            .as_ref()
            .is_none_or(|s| s.alfacrm.is_none() || s.courses.is_empty())
    {
        return Err(ConfigError::Key {
            key: "business.kind".into(),
            message: "kind = \"school\" needs [school.alfacrm] and at least one \
                      [[school.courses]]: the bot reads courses and groups from AlfaCRM"
                .into(),
        });
    }
    if let Some(http) = &deployment.http {
        http.validate()?;
    }
    settings.privacy.validate().map_err(|e| ConfigError::Key {
        key: e.key,
        message: e.message,
    })?;
    deployment.alerts.validate().map_err(|e| ConfigError::Key {
        key: e.key,
        message: e.message,
    })?;
    if let Some(telegram) = &settings.telegram {
        telegram.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
        if telegram.mode == crate::messenger::config::TelegramMode::Webhook
            && deployment.http.is_none()
        {
            return Err(ConfigError::Key {
                key: "http".into(),
                message: "telegram.mode = \"webhook\" needs the [http] server: Telegram posts \
                          updates to it"
                    .into(),
            });
        }
    }
    if let Some(support) = &settings.support {
        support
            .validate(settings.telegram.is_some(), settings.max.is_some())
            .map_err(|e| ConfigError::Key {
                key: e.key,
                message: e.message,
            })?;
    }
    if let Some(token) = settings
        .crm
        .as_ref()
        .and_then(|c| c.bitrix24.as_ref())
        .and_then(|b| b.application_token.as_ref())
    {
        use secrecy::ExposeSecret;
        if let Some(why) = crate::secrets::unusable(token.expose_secret()) {
            return Err(ConfigError::Key {
                key: "crm.bitrix24.application_token".into(),
                message: why.into(),
            });
        }
    }
    if settings.business.name.trim().is_empty() {
        return Err(ConfigError::Key {
            key: "business.name".into(),
            message: "must not be empty".into(),
        });
    }
    if !(deployment.store.url.starts_with("sqlite:")
        || deployment.store.url.starts_with("postgres"))
    {
        // Only the scheme is shown: the rest of a URL may carry a password.
        let scheme = deployment
            .store
            .url
            .split_once("://")
            .map(|(s, _)| s)
            .filter(|s| s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric()))
            .map_or_else(|| "this value".to_string(), |s| format!("the scheme {s:?}"));
        return Err(ConfigError::Key {
            key: "store.url".into(),
            message: format!(
                "{scheme} is neither sqlite:// nor postgres:// (the URL is not shown: it may hold a password)"
            ),
        });
    }
    if let Some(max) = &settings.max {
        max.validate().map_err(|e| ConfigError::Key {
            key: e.key,
            message: e.message,
        })?;
    }
    match settings.booking.system {
        BookingSystemKind::Sandbox => {}
        BookingSystemKind::Yclients => {
            let Some(y) = &settings.booking.yclients else {
                return Err(ConfigError::Key {
                    key: "booking.yclients".into(),
                    message: "system = \"yclients\" needs a [booking.yclients] section \
                              with company_id and partner_token"
                        .into(),
                });
            };
            if !(1..=5).contains(&y.rate_limit_per_second) {
                return Err(ConfigError::Key {
                    key: "booking.yclients.rate_limit_per_second".into(),
                    message: "must be 1..=5, YClients allows 5 requests a second".into(),
                });
            }
        }
        BookingSystemKind::Dikidi => {
            use crate::booking::dikidi::DikidiMode;
            let Some(d) = &settings.booking.dikidi else {
                return Err(ConfigError::Key {
                    key: "booking.dikidi".into(),
                    message: "system = \"dikidi\" needs a [booking.dikidi] section \
                              with company_id"
                        .into(),
                });
            };
            if d.mode == DikidiMode::Partner && d.partner_token.is_none() {
                return Err(ConfigError::Key {
                    key: "booking.dikidi.partner_token".into(),
                    message: "mode = \"partner\" needs the token Dikidi issued".into(),
                });
            }
            // Dikidi publishes no limit; more than the busiest OSS client (7/s) is rude.
            if !(1..=7).contains(&d.rate_limit_per_second) {
                return Err(ConfigError::Key {
                    key: "booking.dikidi.rate_limit_per_second".into(),
                    message: "must be 1..=7".into(),
                });
            }
            if d.poll_jitter_secs >= d.poll_interval_secs {
                return Err(ConfigError::Key {
                    key: "booking.dikidi.poll_jitter_secs".into(),
                    message: "must be smaller than poll_interval_secs".into(),
                });
            }
        }
    }
    Ok(())
}
