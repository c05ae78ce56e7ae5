//! `zapis forget` and `zapis bookings`: one client's data, erased or listed.

use super::*;

pub(super) async fn forget(arg: &ConfigArg, phone: &str) -> anyhow::Result<()> {
    use crate::store::forget::Forgot;
    let config = load(arg)?;
    let phone = crate::normalize::Phone::parse(phone).context("PHONE is not a phone number")?;
    let store = Store::open_existing(&config.store.url).await?;
    let forgot = store
        .forget(&config.business.id, &phone, chrono::Utc::now())
        .await
        .context("erasing the client")?;
    match forgot {
        Forgot::Erased(e) => {
            println!(
                "{}: erased. {e}. The journal records the erasure.",
                phone.masked()
            );
        }
        Forgot::Waiting { deliveries } => {
            println!(
                "{}: {deliveries} deliveries about this client are still on their way. The \
                 erasure is recorded and runs within seconds of the last one ending, while \
                 `zapis run` is running (at the latest when they are given up after \
                 sync.max_age).",
                phone.masked()
            );
        }
    }
    println!(
        "The CRM and the schedule keep what the business holds there: erase the client there too."
    );
    Ok(())
}

pub(super) async fn bookings(
    arg: &ConfigArg,
    upcoming: bool,
    client: Option<String>,
) -> anyhow::Result<()> {
    let config = load(arg)?;
    let client = client
        .map(|c| crate::normalize::Phone::parse(&c))
        .transpose()
        .context("--client is not a phone number")?;
    let store = Store::open_existing(&config.store.url).await?;
    let schedule = match config.booking.system {
        crate::config::BookingSystemKind::Sandbox => System::Sandbox,
        crate::config::BookingSystemKind::Yclients => System::Yclients,
        crate::config::BookingSystemKind::Dikidi => System::Dikidi,
    };
    let crm = config.crm.as_ref().map(|c| match c.system {
        crate::crm::config::CrmSystem::Amocrm => System::AmoCrm,
        crate::crm::config::CrmSystem::Bitrix24 => System::Bitrix24,
    });
    let text = crate::lifecycle::report::bookings_report(
        &store,
        &config.business.id,
        schedule,
        crm,
        config.business.timezone,
        &crate::lifecycle::report::BookingsFilter { upcoming, client },
        chrono::Utc::now(),
    )
    .await
    .context("reading bookings")?;
    print!("{text}");
    store.close().await;
    Ok(())
}
