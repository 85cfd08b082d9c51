#!/usr/bin/python
# Copyright: diskless.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: file_set
short_description: Make a directory hold exactly a given set of small files, written atomically
version_added: 0.1.0
description:
  - Reconciles one directory against the whole desired set of files in a single call, for example one
    dnsmasq C(dhcp-hostsdir) reservation file per node, or the per-node iPXE scripts of an HTTP boot tree.
    A thousand files cost one module call.
  - Every file is written to a temporary file whose name starts with C(.) in the same directory, flushed,
    then renamed into place. dnsmasq's inotify watcher ignores dot files and sees exactly one complete file
    per change; web servers never serve a partial file.
  - With O(prune=true), non-hidden files that are not in the set are removed. Hidden files (names starting
    with C(.)) are never touched.
  - The module sends no signal itself. It reports RV(created), RV(updated) and RV(removed) so that the
    caller can, for example, send SIGHUP to dnsmasq only when an existing reservation changed or went away.
author:
  - diskless.cluster developers (@diskless-cluster)
extends_documentation_fragment:
  - diskless.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff has one entry per created, updated or removed file. The content of O(secret_files) is never
        shown, only its size.
  idempotent:
    support: full
options:
  path:
    description:
      - Absolute path of the directory. It is created when missing.
    type: path
    required: true
  files:
    description:
      - The files to have in O(path), as a mapping of file name to content.
      - A name must be a plain file name (no C(/)), must not start with C(.) and must not end with C(~).
      - With O(prune=false) a name may also be a relative path below O(path) made of such names, for example
        C(etc/chrony/conf.d/cluster.conf) with O(path=/), to install scattered configuration files of one
        host in one call. Missing parent directories are created (O(directory_mode), default C(0755)); each file's
        temporary file is made in its own directory, so every write stays atomic.
    type: dict
    default: {}
  secret_files:
    description:
      - Like O(files), for files whose content is secret (CHAP secrets, keys). Their content is never logged,
        never returned and never shown in the diff.
      - A name must not appear in both O(files) and O(secret_files).
    type: dict
    default: {}
  mode:
    description:
      - Permissions of every file in the set, as an octal string such as C("0644").
    type: raw
    default: "0644"
  directory_mode:
    description:
      - Permissions of O(path) itself, and of the parent directories that sub-path names make it create.
        When omitted, an existing directory keeps its permissions and a new one gets C(0755).
    type: raw
  owner:
    description:
      - Owner (name or uid) of every file and of O(path). When omitted, existing files keep their owner and
        new ones belong to the user running the module.
    type: str
  group:
    description:
      - Group (name or gid) of every file and of O(path). Same defaults as O(owner).
    type: str
  prune:
    description:
      - Remove non-hidden files in O(path) that are not in O(files) or O(secret_files).
      - O(path) must then be dedicated to this set. Sub-directories or symlinks in it make the module fail
        rather than guess.
    type: bool
    default: true
notes:
  - Content is compared byte for byte; C(mode), C(owner) and C(group) changes alone count as updates.
  - The result's C(invocation) lists the file names with their sizes, not their content (the whole set
    would otherwise be sent back on every run).
seealso:
  - name: dnsmasq(8) --dhcp-hostsdir
    description: Files in the directory are read by inotify when added; edits and removals need SIGHUP.
    link: https://thekelleys.org.uk/dnsmasq/docs/dnsmasq-man.html
"""

EXAMPLES = r"""
- name: Install the DHCP reservations, one file per node
  diskless.cluster.file_set:
    path: /etc/dnsmasq.hosts.d
    files:
      52-54-00-00-01-01.conf: "52:54:00:00:01:01,set:known,10.77.0.101,node001,infinite\n"
      52-54-00-00-01-02.conf: "52:54:00:00:01:02,set:known,10.77.0.102,node002,infinite\n"
  register: reservations

- name: Make dnsmasq forget edited or removed reservations
  ansible.builtin.command: systemctl kill --signal=HUP dnsmasq.service
  changed_when: true
  when: (reservations.updated + reservations.removed) | length > 0

- name: Several configuration files of one host in one call (no pruning, paths below /)
  diskless.cluster.file_set:
    path: /
    prune: false
    files:
      etc/chrony/conf.d/cluster.conf: "server 10.77.0.2 iburst\n"
      etc/ansible/facts.d/diskless.fact: '{"node": "node001"}\n'
  register: node_config

- name: Install per-node secret files readable by nginx only
  diskless.cluster.file_set:
    path: /var/lib/diskless/boot-secrets
    secret_files: "{{ boot_files | selectattr('secret') | items2dict(key_name='file', value_name='content') }}"
    mode: "0640"
    directory_mode: "0750"
    owner: root
    group: www-data
"""

RETURN = r"""
directory:
  description: What happened (or would happen in check mode) to O(path) itself.
  returned: always
  type: str
  choices: [created, updated, unchanged]
  sample: unchanged
created:
  description: Names of the files that were (or would be) created.
  returned: always
  type: list
  elements: str
  sample: [52-54-00-00-01-03.conf]
updated:
  description: Names of existing files whose content, mode or ownership was (or would be) changed.
  returned: always
  type: list
  elements: str
  sample: [52-54-00-00-01-01.conf]
removed:
  description: Names of the files that were (or would be) removed by O(prune).
  returned: always
  type: list
  elements: str
  sample: [52-54-00-00-01-09.conf]
unchanged:
  description: Number of files of the set that were already as wanted.
  returned: always
  type: int
  sample: 998
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.diskless.cluster.plugins.module_utils.file_set import (
    FileSet,
    FileSetError,
    invocation_args,
    longest_leaf,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            files=dict(type="dict", default={}),
            secret_files=dict(type="dict", default={}, no_log=True),
            mode=dict(type="raw", default="0644"),
            directory_mode=dict(type="raw"),
            owner=dict(type="str"),
            group=dict(type="str"),
            prune=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        file_set = FileSet(
            p["path"],
            p["files"],
            secret_files=p["secret_files"],
            mode=p["mode"],
            owner=p["owner"],
            group=p["group"],
            directory_mode=p["directory_mode"],
            prune=p["prune"],
        )
        result = file_set.reconcile(check_mode=module.check_mode, want_diff=module._diff)
    except (FileSetError, OSError) as e:
        module.fail_json(msg="file_set %s: %s" % (p["path"], e))
    result["invocation"] = {"module_args": invocation_args(p)}
    # exit_json() masks every no_log value (each secret file's content) in every string of the result, in
    # O(strings x values): 2,000 names against 1,000 CHAP files took seconds. A value longer than every
    # string of the result cannot be in one, so leaving it out masks exactly the same.
    longest = longest_leaf(result)
    module.no_log_values = set(v for v in module.no_log_values if len(v) <= longest)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
