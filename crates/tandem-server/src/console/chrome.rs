//! The layout every console page shares: title bar (node, its state in colour and words, the
//! user, Log out), navigation, the read-only banner, the last action's message.

use super::session::Flash;
use super::{Console, ConsoleSession};
use crate::ha::HaHandle;
use crate::state::AppState;

/// What `templates/console/base.html` shows around a page.
pub struct Chrome {
    pub console: Console,
    /// The page's heading and the first part of its title.
    pub title: String,
    pub node: String,
    pub badge: Badge,
    pub user: String,
    /// The session's form token: every form carries it as `csrf`.
    pub csrf: String,
    /// The navigation entry of this page (its `href`).
    pub active: &'static str,
    pub flash: Option<Flash>,
    /// A notice above the page (e.g. "read-only on this Standby").
    pub banner: Option<String>,
    /// Whether this node refuses changes now (not Active): pages disable their write forms.
    pub read_only: bool,
}

/// A node's state in words and in colour (`badge-<class>` in the stylesheet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Badge {
    pub words: String,
    pub class: &'static str,
}

impl Badge {
    /// The badge of a state as the API names it ("Active", "Standby", "Not Available").
    pub fn of_state(state: &str, fenced: bool) -> Self {
        if fenced {
            return Self {
                words: "Fenced".into(),
                class: "fenced",
            };
        }
        let class = match state {
            "Active" => "active",
            "Standby" => "standby",
            _ => "unavailable",
        };
        Self {
            words: state.to_owned(),
            class,
        }
    }
}

pub struct NavSection {
    pub title: &'static str,
    pub items: &'static [NavItem],
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
}

const SYSTEM_MANAGER_NAV: &[NavSection] = &[
    NavSection {
        title: "Status",
        items: &[
            NavItem {
                href: "/",
                label: "Overview",
            },
            NavItem {
                href: "/ha/cluster",
                label: "Cluster",
            },
        ],
    },
    NavSection {
        title: "Maintenance",
        items: &[
            NavItem {
                href: "/ha/config",
                label: "HA Configuration",
            },
            NavItem {
                href: "/ha/trusted-hosts",
                label: "Manage Trusted Hosts",
            },
            NavItem {
                href: "/ha/sync",
                label: "Sync",
            },
            NavItem {
                href: "/ha/notifications",
                label: "Notification Settings",
            },
        ],
    },
    NavSection {
        title: "Troubleshooting",
        items: &[NavItem {
            href: "/troubleshooting/logs",
            label: "Logs",
        }],
    },
    NavSection {
        title: "Security",
        items: &[NavItem {
            href: "/security/users",
            label: "Local Users",
        }],
    },
];

const ADMIN_NAV: &[NavSection] = &[
    NavSection {
        title: "Overview",
        items: &[NavItem {
            href: "/",
            label: "Dashboard",
        }],
    },
    NavSection {
        title: "Manage",
        items: &[
            NavItem {
                href: "/devices",
                label: "Devices",
            },
            NavItem {
                href: "/users",
                label: "Users",
            },
            NavItem {
                href: "/labels",
                label: "Labels",
            },
        ],
    },
    NavSection {
        title: "Configure",
        items: &[
            NavItem {
                href: "/apps",
                label: "Apps",
            },
            NavItem {
                href: "/policies",
                label: "Policies & Configurations",
            },
        ],
    },
    NavSection {
        title: "Monitor",
        items: &[NavItem {
            href: "/events",
            label: "Events",
        }],
    },
];

impl Chrome {
    /// The layout of a page of `session`'s console, titled `title`, under the navigation entry
    /// `active`.
    pub fn new(
        state: &AppState,
        ha: &HaHandle,
        session: &ConsoleSession,
        active: &'static str,
        title: impl Into<String>,
    ) -> Self {
        let status = state.node_status();
        let fenced = ha.snapshot().fenced.is_some();
        let read_only = !status.accepts_writes();
        let banner = (read_only && session.console == Console::Admin).then(|| {
            format!(
                "Read-only: node {} is {}. Changes are made on the Active node{}.",
                state.node_name,
                status.state,
                state.where_to_go()
            )
        });
        Self {
            console: session.console,
            title: title.into(),
            node: state.node_name.clone(),
            badge: Badge::of_state(&status.state.to_string(), fenced),
            user: session.session.user.clone(),
            csrf: session.session.csrf.clone(),
            active,
            flash: session.flash.clone(),
            banner,
            read_only,
        }
    }

    pub fn product(&self) -> &'static str {
        self.console.product()
    }

    pub fn nav(&self) -> &'static [NavSection] {
        match self.console {
            Console::SystemManager => SYSTEM_MANAGER_NAV,
            Console::Admin => ADMIN_NAV,
        }
    }

    /// `aria-current="page"` belongs on `href` (compared in the template).
    pub fn is_active(&self, href: &str) -> bool {
        self.active == href
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_in_words_and_colour_and_fenced_wins() {
        assert_eq!(Badge::of_state("Active", false).class, "active");
        assert_eq!(Badge::of_state("Standby", false).class, "standby");
        assert_eq!(Badge::of_state("Not Available", false).class, "unavailable");
        assert_eq!(Badge::of_state("Active", true).words, "Fenced");
    }

    #[test]
    fn every_navigation_entry_is_a_distinct_local_page() {
        for nav in [SYSTEM_MANAGER_NAV, ADMIN_NAV] {
            let hrefs: Vec<_> = nav
                .iter()
                .flat_map(|section| section.items.iter().map(|item| item.href))
                .collect();
            let mut unique = hrefs.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), hrefs.len());
            assert!(hrefs.iter().all(|href| href.starts_with('/')));
        }
    }
}
