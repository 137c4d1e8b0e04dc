use super::*;
use crate::AuthMethod;

use Action::{Publish as Pub, Subscribe as Sub};

/// The worked example of the crate README, checked here so the README stays true.
fn readme_example() -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find("# ferry ACL example").expect("the README has the ACL example");
    let end = readme[start..].find("```").expect("the example block ends");
    readme[start..start + end].to_owned()
}

fn user(name: &str) -> Identity {
    Identity::user(name, &format!("{name}-client"), AuthMethod::Password)
}

fn allowed(acl: &Acl, who: &Identity, action: Action, topic: &str) -> bool {
    acl.check(who, action, topic).is_allowed()
}

#[test]
fn readme_example_behaves_as_described() {
    let acl = Acl::parse(&readme_example()).unwrap();
    let anonymous = Identity::anonymous("kiosk-1");
    let (alice, bob, dave) = (user("alice"), user("bob"), user("dave"));

    // Everyone reads the announcements, and owns a tree under its client id.
    for who in [&anonymous, &alice, &bob, &dave] {
        assert!(allowed(&acl, who, Sub, "public/news"));
        assert!(!allowed(&acl, who, Pub, "public/news") || who == &alice);
        let own = format!("clients/{}/state", who.client_id);
        assert!(allowed(&acl, who, Pub, &own) && allowed(&acl, who, Sub, &own));
    }
    assert!(!allowed(&acl, &anonymous, Pub, "clients/someone-else/state"));

    // Anonymous clients read temperatures, nothing more.
    assert!(allowed(&acl, &anonymous, Sub, "sensors/+/temperature"));
    assert!(
        !allowed(&acl, &anonymous, Sub, "sensors/#"),
        "the rule does not cover the whole tree"
    );
    assert!(!allowed(&acl, &anonymous, Pub, "sensors/x/temperature"));

    // bob is a sensor: he writes under his own name and reads his configuration.
    assert!(allowed(&acl, &bob, Pub, "sensors/bob/temperature"));
    assert!(!allowed(&acl, &bob, Pub, "sensors/carol/temperature"));
    assert!(allowed(&acl, &bob, Sub, "config/bob"));
    assert!(!allowed(&acl, &bob, Sub, "config/carol"));
    assert!(acl.check_queue(&bob, Pub, "jobs.results").is_allowed());
    assert!(!acl.check_queue(&bob, Sub, "jobs.results").is_allowed());

    // alice is an admin, but the audit trail is read-only even for her: the more specific
    // rule wins.
    assert!(allowed(&acl, &alice, Pub, "anything/at/all"));
    assert!(allowed(&acl, &alice, Sub, "#"));
    assert!(allowed(&acl, &alice, Sub, "$SYS/broker/uptime"));
    assert!(allowed(&acl, &alice, Sub, "audit/#"));
    assert!(!allowed(&acl, &alice, Pub, "audit/login"));
    assert!(acl.check_queue(&alice, Sub, "jobs.results").is_allowed());
    assert_eq!(
        acl.explain(&alice, Pub, "audit/login"),
        Explanation {
            decision: Decision::Deny,
            reason: Reason::Rule { line: 30 }
        }
    );

    // dave may subscribe to his whole tree; his private messages are then held back at
    // delivery.
    assert!(allowed(&acl, &dave, Sub, "dave/#"));
    assert!(!allowed(&acl, &dave, Sub, "dave/private/#"));
    assert!(acl.needs_delivery_check());
    assert!(allowed(&acl, &dave, Sub, "dave/notes"));
    assert!(!allowed(&acl, &dave, Sub, "dave/private/diary"));
    assert!(acl.check_queue(&dave, Sub, "jobs.eu").is_allowed());
    assert!(!acl.check_queue(&dave, Sub, "jobs.eu.de").is_allowed());

    // Someone unknown gets only what `all` gives, and the default says no to the rest.
    let eve = user("eve");
    assert!(!allowed(&acl, &eve, Sub, "sensors/+/temperature"));
    assert_eq!(acl.explain(&eve, Pub, "x").reason, Reason::Default);
    assert_eq!(acl.roles_of("bob"), ["sensors"]);
}

#[test]
fn most_specific_wins_and_ties_pool() {
    let acl = Acl::parse(
        "user u\n\
         topic readwrite home/#\n\
         topic read home/alarm/#\n\
         topic write home/alarm/+/set\n\
         topic deny home/+/secret\n\
         role r\n\
         topic write shared/x\n\
         topic deny shared/y\n\
         user u\n\
         topic read shared/x\n\
         topic read shared/y\n\
         roles u r\n",
    )
    .unwrap();
    let u = user("u");
    assert!(allowed(&acl, &u, Pub, "home/kitchen/light"));
    assert!(!allowed(&acl, &u, Pub, "home/alarm/state"), "read-only below home/alarm");
    assert!(allowed(&acl, &u, Sub, "home/alarm/state"));
    assert!(allowed(&acl, &u, Pub, "home/alarm/zone1/set"));
    assert!(!allowed(&acl, &u, Sub, "home/alarm/zone1/set"));
    // Longest literal prefix first: `home/alarm/#` beats `home/+/secret`.
    assert!(allowed(&acl, &u, Sub, "home/alarm/secret"));
    assert!(!allowed(&acl, &u, Sub, "home/garage/secret"));
    // Ties between user and role rules pool their access; a deny wins a tie.
    assert!(allowed(&acl, &u, Pub, "shared/x") && allowed(&acl, &u, Sub, "shared/x"));
    assert!(!allowed(&acl, &u, Sub, "shared/y"));
    // Roles can come from the token too.
    let mut v = user("v");
    assert!(!allowed(&acl, &v, Pub, "shared/x"));
    v.roles = vec!["r".to_owned()];
    assert!(allowed(&acl, &v, Pub, "shared/x"));
}

#[test]
fn default_allow_and_allow_all() {
    let acl = Acl::parse("default allow\nall\ntopic deny private/#\n").unwrap();
    let u = user("u");
    assert!(allowed(&acl, &u, Pub, "a/b"));
    assert!(!allowed(&acl, &u, Pub, "private/x"));
    assert_eq!(acl.default_decision(), Decision::Allow);
    let all = Acl::allow_all();
    assert!(allowed(&all, &u, Sub, "#") && !all.needs_delivery_check());
    assert_eq!(all.rule_count(), 0);
    assert!(!allowed(&Acl::default(), &u, Sub, "a"));
}

#[test]
fn invalid_requests_are_denied() {
    let acl = Acl::allow_all();
    let u = user("u");
    assert_eq!(acl.explain(&u, Pub, "a/+").reason, Reason::Invalid);
    assert_eq!(acl.explain(&u, Sub, "a/#/b").reason, Reason::Invalid);
    assert_eq!(acl.explain(&u, Pub, "").reason, Reason::Invalid);
    assert_eq!(acl.explain_queue(&u, Pub, "").reason, Reason::Invalid);
    assert!(allowed(&acl, &u, Sub, "a/+"));
}

#[test]
fn client_ids_and_user_names_cannot_escape_their_level() {
    let acl = Acl::parse("all\npattern readwrite devices/%c/#\npattern read users/%u\n").unwrap();
    let mut sneaky = user("a/b");
    sneaky.client_id = "x/y".to_owned();
    assert!(!allowed(&acl, &sneaky, Pub, "devices/x/y/cmd"));
    assert!(!allowed(&acl, &sneaky, Sub, "users/a/b"));
    sneaky.client_id = "+".to_owned();
    assert!(!allowed(&acl, &sneaky, Sub, "devices/+/cmd"));
    let anonymous = Identity::anonymous("d1");
    assert!(allowed(&acl, &anonymous, Pub, "devices/d1/cmd"));
    assert!(!allowed(&acl, &anonymous, Sub, "users/%u"));
}

#[test]
fn token_grants_limit_and_grant() {
    let acl = Acl::parse("user bob\ntopic readwrite sensors/#\ntopic deny sensors/bob/secret\nqueue readwrite #\n").unwrap();
    let mut bob = user("bob");
    bob.grants = Some(TokenGrants::new(Some(&["sensors/%u/#", "/queue/out.%u"]), Some(&["news/#"])).unwrap());
    // Publishing: the token limits bob to his own tree; the file still denies the secret.
    assert!(allowed(&acl, &bob, Pub, "sensors/bob/temp"));
    assert_eq!(acl.explain(&bob, Pub, "sensors/carol/temp").reason, Reason::TokenGrants);
    assert!(!allowed(&acl, &bob, Pub, "sensors/bob/secret"));
    assert!(acl.check_queue(&bob, Pub, "out.bob").is_allowed());
    assert!(!acl.check_queue(&bob, Pub, "out.carol").is_allowed());
    // Subscribing: the token grants news/# where the file is silent, and nothing else.
    assert_eq!(acl.explain(&bob, Sub, "news/today").reason, Reason::TokenGrant);
    assert!(allowed(&acl, &bob, Sub, "news/#"));
    assert!(!allowed(&acl, &bob, Sub, "sensors/#"));
    assert!(!acl.check_queue(&bob, Sub, "out.bob").is_allowed());
    // Without an ACL file, grants alone decide.
    let all = Acl::allow_all();
    assert!(allowed(&all, &bob, Sub, "news/x") && !allowed(&all, &bob, Sub, "other"));
}

#[test]
fn syntax_details() {
    let acl = Acl::parse(
        "  # comment\n\
         \n\
         user Jane Doe\n\
         topic read a b/c\n\
         topic publish x\n\
         topic subscribe y\n\
         topic rates/100%\n\
         pattern readwrite p/%%/%u\n\
         anonymous\n\
         queue read q.*\n",
    )
    .unwrap();
    let jane = user("Jane Doe");
    assert!(allowed(&acl, &jane, Sub, "a b/c") && !allowed(&acl, &jane, Pub, "a b/c"));
    assert!(allowed(&acl, &jane, Pub, "x") && !allowed(&acl, &jane, Sub, "x"));
    assert!(allowed(&acl, &jane, Sub, "y") && !allowed(&acl, &jane, Pub, "y"));
    assert!(allowed(&acl, &jane, Pub, "rates/100%"));
    assert!(allowed(&acl, &jane, Pub, "p/%/Jane Doe"), "a space is no separator");
    assert!(acl.check_queue(&Identity::anonymous("c"), Sub, "q.x").is_allowed());
    assert_eq!(acl.rule_count(), 6);
}

#[test]
fn errors_name_the_line() {
    let cases = [
        ("topic read a\n", 1, "must come after"),
        ("user\n", 1, "user needs a name"),
        ("role a b\n", 1, "white space"),
        ("all\n\nfrobnicate x\n", 3, "unknown keyword \"frobnicate\""),
        ("all\ntopic raed a/b\n", 2, "unknown access \"raed\""),
        ("all\ntopic read\n", 2, "missing pattern after \"read\""),
        ("all\ntopic\n", 2, "missing pattern"),
        ("all\ntopic read a/#/b\n", 2, "invalid pattern"),
        ("all\npattern read a/%x\n", 2, "%x"),
        ("all\nqueue read a.#.b\n", 2, "queue pattern"),
        ("default allow\ndefault deny\n", 2, "`default`"),
        ("default maybe\n", 1, "`default`"),
        ("anonymous x\n", 1, "anonymous takes no argument"),
        ("all x\n", 1, "all takes no argument"),
        ("roles alice\n", 1, "roles needs a name"),
    ];
    for (text, line, expected) in cases {
        let err = Acl::parse(text).unwrap_err();
        assert!(matches!(err, AclError::Line { line: l, .. } if l == line), "{text:?}: {err}");
        let message = err.to_string();
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    let err = Acl::load(Path::new("/nonexistent/acl")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/acl"), "{err}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, failure_persistence: None, ..Default::default() })]

    /// Any text: a parsed ACL or an error naming a line, never a panic; and checking
    /// anything against what parses never panics either.
    #[test]
    fn parsing_and_checking_never_panic(
        lines in proptest::collection::vec("(user|role|roles|all|anonymous|topic|pattern|queue|default|read|deny|#|%u|%c|%|[a+#/. $*]){0,6}", 0..8),
        request in "[a+#/.%$*]{0,6}",
    ) {
        let text = lines.iter().map(|l| l.replace(['|', '(', ')'], " ")).collect::<Vec<_>>().join("\n");
        match Acl::parse(&text) {
            Ok(acl) => {
                let who = user("a");
                for action in [Pub, Sub] {
                    let _ = acl.check(&who, action, &request);
                    let _ = acl.check_queue(&who, action, &request);
                    let _ = acl.check(&Identity::anonymous("+"), action, &request);
                }
            }
            Err(AclError::Line { line, .. }) => proptest::prop_assert!(line >= 1 && line <= lines.len()),
            Err(other) => proptest::prop_assert!(false, "{other}"),
        }
    }
}
