//! Heart-beat negotiation (STOMP 1.1/1.2 §"Heart-beating"). The client's CONNECT says
//! `heart-beat:cx,cy` (it can send every cx ms, wants to receive every cy ms; 0: no),
//! the server's CONNECTED `heart-beat:sx,sy`. Then the server sends every
//! max(sx, cy) ms unless sx or cy is 0, and expects something from the client every
//! max(cx, sy) ms unless cx or sy is 0; a client silent for that times the grace
//! factor is closed. STOMP 1.0 has no heart-beats.

use std::time::Duration;

/// What one session negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartBeat {
    /// Send a heart-beat after this long without sending anything.
    pub send_every: Option<Duration>,
    /// Close after this long without receiving anything (interval × grace).
    pub silence_limit: Option<Duration>,
}

/// Parse a `heart-beat` header (`cx,cy` in milliseconds); absent means `0,0`.
pub fn parse(header: Option<&str>) -> Option<(u64, u64)> {
    let Some(value) = header else {
        return Some((0, 0));
    };
    let (a, b) = value.split_once(',')?;
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    Some((number(a)?, number(b)?))
}

/// The server's `heart-beat` header: `sx,sy` in milliseconds.
pub fn header(send: Duration, receive: Duration) -> String {
    format!("{},{}", send.as_millis(), receive.as_millis())
}

/// Settle heart-beating between a client's `(cx, cy)` and the server's send and
/// receive intervals.
pub fn negotiate(client: (u64, u64), send: Duration, receive: Duration, grace: f64) -> HeartBeat {
    let (cx, cy) = client;
    let (sx, sy) = (send.as_millis(), receive.as_millis());
    let interval = |a: u128, b: u128| (a != 0 && b != 0).then(|| Duration::from_millis(u64::try_from(a.max(b)).unwrap_or(u64::MAX)));
    HeartBeat {
        send_every: interval(sx, u128::from(cy)),
        silence_limit: interval(u128::from(cx), sy).map(|d| {
            // A grace below 1 (or not a number) counts as 1; one too large, as forever.
            let grace = if grace.is_nan() { 1.0 } else { grace.max(1.0) };
            Duration::try_from_secs_f64(d.as_secs_f64() * grace).unwrap_or(Duration::MAX)
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S10: Duration = Duration::from_secs(10);

    #[test]
    fn headers_parse_and_absent_means_none() {
        assert_eq!(parse(None), Some((0, 0)));
        assert_eq!(parse(Some("1000,2000")), Some((1000, 2000)));
        assert_eq!(parse(Some("0, 0")), Some((0, 0)));
        assert_eq!(parse(Some("1000")), None);
        assert_eq!(parse(Some("-1,0")), None);
        assert_eq!(parse(Some("a,b")), None);
        assert_eq!(header(S10, Duration::ZERO), "10000,0");
    }

    #[test]
    fn each_direction_takes_the_larger_interval_unless_a_side_says_zero() {
        let hb = negotiate((4000, 20_000), S10, S10, 2.0);
        assert_eq!(hb.send_every, Some(Duration::from_secs(20)), "max(sx, cy)");
        assert_eq!(hb.silence_limit, Some(Duration::from_secs(20)), "max(cx, sy) × grace");
        let hb = negotiate((0, 5000), S10, S10, 2.0);
        assert_eq!(hb.silence_limit, None, "the client cannot send");
        assert_eq!(hb.send_every, Some(S10));
        let hb = negotiate((5000, 5000), Duration::ZERO, Duration::ZERO, 2.0);
        assert_eq!(hb, HeartBeat::default(), "the server offers none");
        let odd = negotiate((1000, 0), S10, S10, f64::INFINITY);
        assert_eq!(odd.silence_limit, Some(Duration::MAX));
        let odd = negotiate((1000, 0), S10, S10, f64::NAN);
        assert_eq!(odd.silence_limit, Some(S10));
    }
}
