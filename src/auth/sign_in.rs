//! How a login was made (`SignIn`) and when (`Login`): what a token's `amr`,
//! `mfa_method` and `auth_time` say and what a refresh token keeps. Imports nothing.

/// How the login behind a token was made: its `amr` (RFC 8176) and `mfa_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignIn {
    /// A password alone.
    Password,
    /// A password and a TOTP code.
    PasswordTotp,
    /// A password and a backup code.
    PasswordBackupCode,
    /// A password and a passkey.
    PasswordPasskey,
    /// A passkey with user verification alone (passwordless): both factors in one.
    Passkey,
    /// `mfad token`: an administrator's, no sign-in at all.
    Issued,
}

impl SignIn {
    /// The `amr` claim.
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            SignIn::Password => &["pwd"],
            SignIn::PasswordTotp | SignIn::PasswordBackupCode => &["pwd", "otp"],
            SignIn::PasswordPasskey => &["pwd", "hwk"],
            SignIn::Passkey => &["hwk", "user"],
            SignIn::Issued => &[],
        }
    }

    /// The `mfa_method` claim: which second factor, when there was one.
    pub fn mfa_method(self) -> Option<&'static str> {
        match self {
            SignIn::PasswordTotp => Some("totp"),
            SignIn::PasswordBackupCode => Some("backup_code"),
            SignIn::PasswordPasskey => Some("passkey"),
            // A passkey alone is no second factor added to a first: `amr` says it all.
            SignIn::Password | SignIn::Passkey | SignIn::Issued => None,
        }
    }

    /// As stored with a login's refresh tokens.
    pub fn as_str(self) -> &'static str {
        match self {
            SignIn::Password => "pwd",
            SignIn::PasswordTotp => "totp",
            SignIn::PasswordBackupCode => "backup_code",
            SignIn::PasswordPasskey => "pwd_passkey",
            SignIn::Passkey => "passkey",
            SignIn::Issued => "issued",
        }
    }

    /// The inverse of [`SignIn::as_str`].
    pub fn from_stored(s: &str) -> Option<SignIn> {
        [
            SignIn::Password,
            SignIn::PasswordTotp,
            SignIn::PasswordBackupCode,
            SignIn::PasswordPasskey,
            SignIn::Passkey,
            SignIn::Issued,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// A login: how it was made and when (`auth_time`). Refresh keeps both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    pub how: SignIn,
    pub at: i64,
}
