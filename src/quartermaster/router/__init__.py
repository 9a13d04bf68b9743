"""quartermaster.router"""
