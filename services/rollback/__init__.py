"""Feature rollback: by an operator (``enterprisehub rollback feature``) or by itself.

- ``alerts``: Alertmanager's webhook payload and the incidents it names;
- ``procedure``: flags off once per incident, with the audit rows;
- ``notify``: the Slack message;
- ``main``/``routes``: rollback-handler (8005), the service Alertmanager calls;
- ``cli``: the operator command.
"""
