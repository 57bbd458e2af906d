"""The bootstrap stack: GitHub's OIDC provider and one deploy role per stack.

A separate, small Pulumi project (`infra/bootstrap/Pulumi.yaml`), run once per
AWS account by an administrator before CI can deploy (docs/deploying.md,
"CI/CD"). Each role trusts only GitHub's OIDC tokens for
`repo:<owner>/<repo>:environment:<stack>`: a workflow job gets it only while
it runs in the GitHub environment named after that stack, so environment
protection (required reviewers for production) guards the credentials too.
"""
