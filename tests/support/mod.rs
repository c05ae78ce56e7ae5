pub mod fake_amocrm;
